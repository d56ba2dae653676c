package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// TestMain lets the test binary run as the conformance worker itself.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_CONFORMANCE_WORKER") == "1" {
		os.Args = append([]string{os.Args[0]}, strings.Fields(os.Getenv("CONFORMANCE_WORKER_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// oneSession is a WorkerService peer that hands its single session to the test.
type oneSession struct {
	pb.UnimplementedWorkerServiceServer
	streams chan grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse]
	done    chan struct{}
}

func (s *oneSession) Connect(stream grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse]) error {
	s.streams <- stream
	<-s.done
	return nil
}

func TestProcessPrintsReadyServesAndDrainsOnSIGTERM(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &oneSession{streams: make(chan grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse], 1), done: make(chan struct{})}
	srv := grpc.NewServer()
	pb.RegisterWorkerServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUN_CONFORMANCE_WORKER=1", "MULTIAGENTS_TOKEN=tok",
		"CONFORMANCE_WORKER_ARGS=--server "+lis.Addr().String()+" --prefix conf --max-concurrency 3")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	var stream grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse]
	select {
	case stream = <-fake.streams:
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not connect")
	}
	md, _ := metadata.FromIncomingContext(stream.Context())
	if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer tok"}) {
		t.Errorf("authorization %q", got)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	hello := first.GetHello()
	want := []string{"conf.compensate", "conf.fail", "conf.flaky", "conf.invalid", "conf.slow", "conf.step", "conf.stream"}
	if !slices.Equal(hello.GetWorkerNames(), want) || hello.GetMaxConcurrency() != 3 || hello.GetSdkLanguage() != "go" {
		t.Errorf("hello %v", hello)
	}
	if err := stream.Send(&pb.ConnectResponse{Message: &pb.ConnectResponse_Welcome{Welcome: &pb.Welcome{
		SessionId: "s", HeartbeatInterval: durationpb.New(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "READY\n" {
		t.Fatalf("stdout %q, %v", line, err)
	}

	ctxJSON := []byte(`{"visited":["python"]}`)
	if err := stream.Send(&pb.ConnectResponse{Message: &pb.ConnectResponse_Command{Command: &pb.Command{
		CommandId: "c1", WorkerName: "conf.step", Step: "two", Attempt: 1,
		Context: &pb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: ctxJSON},
	}}}); err != nil {
		t.Fatal(err)
	}
	answer, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var result map[string]any
	if err := json.Unmarshal(answer.GetResult().GetResult().GetData(), &result); err != nil {
		t.Fatalf("answer %v: %v", answer, err)
	}
	if got := result["visited"].([]any); len(got) != 2 || got[1] != "go" || result["step_two"] != "go" {
		t.Errorf("result %v", result)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	drain, err := stream.Recv()
	if err != nil || drain.GetDrain() == nil {
		t.Fatalf("after SIGTERM got %v, %v; want Drain", drain, err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("worker did not close the stream after draining")
	}
	close(fake.done)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("worker exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not exit after SIGTERM")
	}
}
