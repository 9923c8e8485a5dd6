package dnstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/miekg/dns"
)

// Helpers for tests that speak DNS on raw sockets.

// Pack packs m or fails the test.
func Pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack %v: %v", m.Question, err)
	}
	return b
}

// Frame returns m with its TCP length prefix (RFC 1035 4.2.2).
func Frame(m []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
}

// WriteFrame writes m as one length-prefixed TCP message.
func WriteFrame(w io.Writer, m []byte) error {
	if _, err := w.Write(Frame(m)); err != nil {
		return fmt.Errorf("write tcp frame: %w", err)
	}
	return nil
}

// ReadFrame reads one length-prefixed TCP message.
func ReadFrame(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
