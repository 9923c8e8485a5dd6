// The JSON document: syntax and duplicate-key checks with positions, exact
// decoding of values, and how values are named in error messages.

package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// checkSyntax reports invalid JSON with its line and column.
func checkSyntax(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("config is empty (an empty configuration is {})")
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Errorf("config is not valid JSON: line %d, column %d (byte %d): %w", line, col, se.Offset, err)
	}
	if err != nil {
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("config is not a JSON object: got %s", jsonType(v))
	}
	return nil
}

func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

// checkDuplicateKeys walks the token stream: encoding/json silently keeps
// the last of two equal keys, which would hide an operator's mistake.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkDup(dec, "")
}

func walkDup(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("config is not valid JSON: %w", err)
			}
			k, _ := kt.(string)
			child := childPath(path, k)
			if seen[k] {
				return &KeyError{Key: child, Err: errors.New("key appears more than once")}
			}
			seen[k] = true
			if err := walkDup(dec, child); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walkDup(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	return nil
}

func childPath(parent, k string) string {
	switch {
	case parent == "":
		return k
	case parent == "forward_zones":
		return zoneKey(k)
	default:
		return parent + "." + k
	}
}

func zoneKey(zone string) string { return fmt.Sprintf("forward_zones[%q]", zone) }

// decodeValue decodes one raw value keeping numbers exact, so that 53.5 or
// 1e3 can be told apart from an integer.
func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after value")
	}
	return v, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// describe renders a value for an error message: short, and quoted when it
// is a string so that whitespace and emptiness are visible.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%s %q", jsonType(v), x)
	case json.Number:
		return fmt.Sprintf("%s %s", jsonType(v), x.String())
	case bool:
		return fmt.Sprintf("%s %t", jsonType(v), x)
	}
	return jsonType(v)
}

func unknownKeyMsg(k string, known []string) string {
	return fmt.Sprintf("unknown key %q (known keys: %s)", k, strings.Join(known, ", "))
}
