package worker

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// OutputKind says what a chunk of a step's output holds.
type OutputKind int32

const (
	// OutputToken is generated text (LLM tokens): watchers concatenate it.
	OutputToken = OutputKind(pb.OutputKind_OUTPUT_KIND_TOKEN)
	// OutputJSON is a fragment of a JSON document being generated.
	OutputJSON = OutputKind(pb.OutputKind_OUTPUT_KIND_JSON)
	// OutputLog is a log line.
	OutputLog = OutputKind(pb.OutputKind_OUTPUT_KIND_LOG)
)

// MaxChunkBytes is the largest output chunk the server accepts.
const MaxChunkBytes = 64 * 1024

const nanoUSDPerUSD = 1_000_000_000

// Usage is what an LLM call cost: tokens, the model, and the cost in US
// dollars (CostUSD, rounded to nano-dollars) or in nano-dollars (1e-9 USD).
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	Model        string
	CostUSD      float64
	CostNanoUSD  int64
}

// taskOutput is the output stream and usage of one running command.
type taskOutput struct {
	id   string
	send func(*pb.OutputChunk) // queues a chunk for the session

	mu       sync.Mutex
	sequence uint64
	refused  string
	usage    pb.Usage
	models   []string
}

func (o *taskOutput) emit(kind OutputKind, text string, data []byte, binary bool) error {
	size := len(text) + len(data)
	if size > MaxChunkBytes {
		return fmt.Errorf("worker: an output chunk is at most %d bytes, got %d", MaxChunkBytes, size)
	}
	o.mu.Lock()
	if o.refused != "" || size == 0 {
		o.mu.Unlock()
		return nil
	}
	o.sequence++
	chunk := &pb.OutputChunk{CommandId: o.id, Sequence: o.sequence, Kind: pb.OutputKind(kind)}
	if binary {
		chunk.Data = &pb.OutputChunk_Binary{Binary: slices.Clone(data)}
	} else {
		chunk.Data = &pb.OutputChunk_Text{Text: text}
	}
	// Queued under the lock, so chunks keep their order.
	o.send(chunk)
	o.mu.Unlock()
	return nil
}

func (o *taskOutput) acknowledged(ack *pb.OutputAck) {
	if ack.GetRefused() == "" {
		return
	}
	o.mu.Lock()
	o.refused = ack.GetRefused()
	o.mu.Unlock()
}

func (o *taskOutput) report(u Usage) error {
	cost := u.CostNanoUSD + int64(math.Round(u.CostUSD*nanoUSDPerUSD))
	if u.InputTokens < 0 || u.OutputTokens < 0 || cost < 0 {
		return fmt.Errorf("worker: usage tokens and cost must be >= 0")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.usage.InputTokens += u.InputTokens
	o.usage.OutputTokens += u.OutputTokens
	o.usage.CostNanoUsd += cost
	if u.Model != "" && !slices.Contains(o.models, u.Model) {
		o.models = append(o.models, u.Model)
		slices.Sort(o.models)
	}
	return nil
}

// proto is the usage to send with the answer; nil when none was reported.
func (o *taskOutput) proto() *pb.Usage {
	o.mu.Lock()
	defer o.mu.Unlock()
	u := &pb.Usage{InputTokens: o.usage.InputTokens, OutputTokens: o.usage.OutputTokens,
		CostNanoUsd: o.usage.CostNanoUsd, Model: strings.Join(o.models, ",")}
	if u.InputTokens == 0 && u.OutputTokens == 0 && u.CostNanoUsd == 0 && u.Model == "" {
		return nil
	}
	return u
}

// Emit publishes text as a chunk of the step's output (OutputToken): the
// server appends it to the execution's durable output stream, which
// `multiagents watch` follows. It never blocks. Chunks are dropped after
// the server refused the command's output (its attempt was superseded);
// an error only for a chunk over MaxChunkBytes. Does nothing on a Task the
// Worker did not make.
func (t *Task) Emit(text string) error {
	return t.EmitOutput(OutputToken, text)
}

// EmitOutput is Emit with a kind (OutputToken, OutputJSON or OutputLog).
func (t *Task) EmitOutput(kind OutputKind, text string) error {
	if t.output == nil {
		return nil
	}
	return t.output.emit(kind, text, nil, false)
}

// EmitBytes publishes bytes as a chunk of the step's output.
func (t *Task) EmitBytes(kind OutputKind, data []byte) error {
	if t.output == nil {
		return nil
	}
	return t.output.emit(kind, "", data, true)
}

// ReportUsage adds tokens and cost to what the command reports with its
// answer (a result or a failure: a failed attempt still costs). Calls add
// up. An error for negative values.
func (t *Task) ReportUsage(u Usage) error {
	if t.output == nil {
		return nil
	}
	return t.output.report(u)
}

// mergeChunks joins consecutive text chunks of one command and kind (a
// burst of tokens becomes one message), up to a quarter of MaxChunkBytes;
// a merged chunk carries the last sequence.
func mergeChunks(chunks []*pb.OutputChunk) []*pb.OutputChunk {
	var out []*pb.OutputChunk
	for _, c := range chunks {
		if n := len(out); n > 0 {
			last := out[n-1]
			lt, lok := last.GetData().(*pb.OutputChunk_Text)
			ct, cok := c.GetData().(*pb.OutputChunk_Text)
			if lok && cok && last.GetCommandId() == c.GetCommandId() && last.GetKind() == c.GetKind() &&
				len(lt.Text)+len(ct.Text) <= MaxChunkBytes/4 {
				out[n-1] = &pb.OutputChunk{CommandId: c.GetCommandId(), Sequence: c.GetSequence(),
					Kind: c.GetKind(), Data: &pb.OutputChunk_Text{Text: lt.Text + ct.Text}}
				continue
			}
		}
		out = append(out, c)
	}
	return out
}
