package worker_test

import (
	"os"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

func osPid() int { return os.Getpid() }

func durationPB(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
