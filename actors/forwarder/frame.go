package forwarder

import (
	"encoding/binary"
	"errors"
	"io"
)

// TCP framing (RFC 1035 4.2.2): every DNS message on a TCP connection is
// preceded by its length in two bytes. The one implementation, for both
// sides: the TCP listener's client connections and the goroutine race's
// upstream connections.

// errFrameSize marks a length prefix no message can have: the stream is
// unusable from there on.
var errFrameSize = errors.New("TCP frame length out of range")

// AppendFrame appends m to dst as one framed message.
func AppendFrame(dst, m []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m)))
	return append(dst, m...)
}

// ReadFrame reads one framed message of 1 to max bytes; another length is
// errFrameSize. begun, unless nil, is called as soon as the first byte of
// the frame has arrived: the TCP listener waits for a frame up to its idle
// timeout, then gives the rest of it a shorter one (a client that starts a
// frame and stalls is cut off).
func ReadFrame(r io.Reader, max int, begun func()) ([]byte, error) {
	var l [2]byte
	if begun == nil {
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, err
		}
	} else {
		if _, err := io.ReadFull(r, l[:1]); err != nil {
			return nil, err
		}
		begun()
		if _, err := io.ReadFull(r, l[1:]); err != nil {
			return nil, err
		}
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n == 0 || n > max {
		return nil, errFrameSize
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
