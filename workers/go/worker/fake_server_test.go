package worker_test

// A scriptable in-process WorkerService peer: each test plays the server's
// side of the protocol message by message.

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/worker"
)

const waitFor = 5 * time.Second

type fakeServer struct {
	pb.UnimplementedWorkerServiceServer
	addr     string
	sessions chan *fakeSession
}

type fakeSession struct {
	stream grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse]
	md     metadata.MD
	in     chan *pb.ConnectRequest // closed when the worker half-closes or the stream dies
	end    chan error
}

func startFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{addr: lis.Addr().String(), sessions: make(chan *fakeSession, 16)}
	srv := grpc.NewServer()
	pb.RegisterWorkerServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

// Connect hands the session to the test and ends it when the test says so,
// or with OK when the worker half-closes (as the real server does).
func (f *fakeServer) Connect(stream grpc.BidiStreamingServer[pb.ConnectRequest, pb.ConnectResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s := &fakeSession{stream: stream, md: md, in: make(chan *pb.ConnectRequest, 1000), end: make(chan error, 1)}
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		defer close(s.in)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			s.in <- m
		}
	}()
	f.sessions <- s
	select {
	case err := <-s.end:
		return err
	case <-eof:
		return nil
	}
}

func (f *fakeServer) accept(t *testing.T) *fakeSession {
	t.Helper()
	select {
	case s := <-f.sessions:
		return s
	case <-time.After(waitFor):
		t.Fatal("no session opened")
		return nil
	}
}

// open accepts a session, checks its Hello and welcomes it.
func (f *fakeServer) open(t *testing.T, heartbeat time.Duration) (*fakeSession, *pb.Hello) {
	t.Helper()
	s := f.accept(t)
	hello := s.next(t).GetHello()
	if hello == nil {
		t.Fatal("first message is not Hello")
	}
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Welcome{Welcome: &pb.Welcome{
		SessionId: "s-1", HeartbeatInterval: durationpb.New(heartbeat),
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1, MaxPayloadBytes: 2 << 20,
		ResumeToken: "token-of-s-1",
	}}})
	return s, hello
}

func (s *fakeSession) send(t *testing.T, m *pb.ConnectResponse) {
	t.Helper()
	if err := s.stream.Send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (s *fakeSession) command(t *testing.T, c *pb.Command) {
	t.Helper()
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Command{Command: c}})
}

// next returns the worker's next message.
func (s *fakeSession) next(t *testing.T) *pb.ConnectRequest {
	t.Helper()
	select {
	case m, ok := <-s.in:
		if !ok {
			t.Fatal("session closed while waiting for a message")
		}
		return m
	case <-time.After(waitFor):
		t.Fatal("no message from the worker")
		return nil
	}
}

// nextOutcomes returns the answers of the next answering message, skipping
// heartbeats.
func (s *fakeSession) nextOutcomes(t *testing.T) []*pb.CommandOutcome {
	t.Helper()
	for {
		m := s.next(t)
		switch x := m.GetMessage().(type) {
		case *pb.ConnectRequest_Result:
			return []*pb.CommandOutcome{{Outcome: &pb.CommandOutcome_Result{Result: x.Result}}}
		case *pb.ConnectRequest_Failure:
			return []*pb.CommandOutcome{{Outcome: &pb.CommandOutcome_Failure{Failure: x.Failure}}}
		case *pb.ConnectRequest_Outcomes:
			return x.Outcomes.GetOutcomes()
		case *pb.ConnectRequest_Heartbeat:
		default:
			t.Fatalf("unexpected message %v", m)
		}
	}
}

func (s *fakeSession) nextOutcome(t *testing.T) *pb.CommandOutcome {
	t.Helper()
	outs := s.nextOutcomes(t)
	if len(outs) != 1 {
		t.Fatalf("got %d outcomes, want 1", len(outs))
	}
	return outs[0]
}

// nextHeartbeat returns the next Heartbeat, failing on anything else.
func (s *fakeSession) nextHeartbeat(t *testing.T) *pb.Heartbeat {
	t.Helper()
	m := s.next(t)
	if m.GetHeartbeat() == nil {
		t.Fatalf("got %v, want a Heartbeat", m)
	}
	return m.GetHeartbeat()
}

// waitClosed waits until the worker half-closes the stream and returns what
// it sent before.
func (s *fakeSession) waitClosed(t *testing.T) []*pb.ConnectRequest {
	t.Helper()
	var rest []*pb.ConnectRequest
	deadline := time.After(waitFor)
	for {
		select {
		case m, ok := <-s.in:
			if !ok {
				return rest
			}
			rest = append(rest, m)
		case <-deadline:
			t.Fatal("worker did not close the session")
		}
	}
}

// running is a Worker running in the background.
type running struct {
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan error
}

func runWorker(t *testing.T, opts worker.Options, handlers map[string]worker.Handler) *running {
	t.Helper()
	w := worker.New(opts)
	for name, h := range handlers {
		w.Register(name, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(2 * waitFor):
			t.Error("Run did not return")
		}
	})
	return r
}

// wait returns Run's error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(2 * waitFor):
		t.Fatal("Run did not return")
		return nil
	}
}
