// Package payload converts between Go maps and multiagents.v1.Payload, whose
// data is a JSON object and whose metadata["encoding"] is "json/plain".
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// EncodingKey is the metadata key that names a payload's encoding.
const EncodingKey = "encoding"

// JSONPlain is the default (and for now the only) encoding.
const JSONPlain = "json/plain"

// Encode returns a json/plain payload holding m as a JSON object; nil is {}.
func Encode(m map[string]any) (*pb.Payload, error) {
	if m == nil {
		m = map[string]any{}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return FromJSON(data), nil
}

// FromJSON wraps already encoded JSON in a json/plain payload.
func FromJSON(data []byte) *pb.Payload {
	return &pb.Payload{
		Metadata: map[string][]byte{EncodingKey: []byte(JSONPlain)},
		Data:     data,
	}
}

// JSON returns the JSON text of p, checking its encoding. A nil or empty
// payload is the empty object. A payload without an encoding is taken as
// json/plain.
func JSON(p *pb.Payload) ([]byte, error) {
	if p == nil {
		return []byte("{}"), nil
	}
	if enc, ok := p.GetMetadata()[EncodingKey]; ok && string(enc) != JSONPlain {
		return nil, fmt.Errorf("unsupported payload encoding %q (want %q)", enc, JSONPlain)
	}
	if len(bytes.TrimSpace(p.GetData())) == 0 {
		return []byte("{}"), nil
	}
	return p.GetData(), nil
}

// Decode returns the JSON object held by p (see JSON). Numbers are float64,
// as encoding/json decodes them into interface values.
func Decode(p *pb.Payload) (map[string]any, error) {
	data, err := JSON(p)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if m == nil { // the JSON text was null
		return nil, errors.New("payload is not a JSON object: null")
	}
	return m, nil
}
