package payload

import (
	"testing"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

func TestEncodeNilMapIsEmptyObject(t *testing.T) {
	p, err := Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.GetData()) != "{}" || string(p.GetMetadata()[EncodingKey]) != JSONPlain {
		t.Fatalf("got %q %q", p.GetData(), p.GetMetadata())
	}
}

func TestDecodeRoundTripsAnObject(t *testing.T) {
	p, err := Encode(map[string]any{"a": 1, "b": []any{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if m["a"] != float64(1) || m["b"].([]any)[0] != "x" {
		t.Fatalf("got %v", m)
	}
}

func TestDecodeTreatsMissingPayloadAsEmptyObject(t *testing.T) {
	for _, p := range []*pb.Payload{nil, {}, {Data: []byte("  ")}} {
		m, err := Decode(p)
		if err != nil || len(m) != 0 || m == nil {
			t.Fatalf("Decode(%v) = %v, %v", p, m, err)
		}
	}
}

func TestDecodeRejectsNonObjectsAndOtherEncodings(t *testing.T) {
	bad := []*pb.Payload{
		FromJSON([]byte("[1,2]")),
		FromJSON([]byte("null")),
		FromJSON([]byte("{")),
		{Metadata: map[string][]byte{EncodingKey: []byte("binary/zstd")}, Data: []byte("{}")},
	}
	for _, p := range bad {
		if _, err := Decode(p); err == nil {
			t.Errorf("Decode(%q) succeeded", p.GetData())
		}
	}
}
