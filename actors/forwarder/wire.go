package forwarder

import (
	"encoding/binary"
	"errors"
)

// Wire-level helpers. Spartan passes upstream replies through byte for byte
// (RFC 5625), so it never re-packs a message: it reads just enough of the
// header and question to route and validate, and rewrites only the ID.

const (
	headerLen   = 12
	maxNameWire = 255
)

// Header bits and fields.
const (
	flagQR     = 0x80 // in byte 2
	opcodeMask = 0x78 // in byte 2
	flagRD     = 0x01 // in byte 2
	flagRA     = 0x80 // in byte 3
	rcodeMask  = 0x0f // in byte 3
)

// DNS rcodes used here.
const (
	rcodeNoError  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
)

var (
	errShort       = errors.New("message shorter than a DNS header")
	errBadName     = errors.New("malformed name")
	errTruncated   = errors.New("message truncated")
	errNotReply    = errors.New("QR not set")
	errIDMismatch  = errors.New("ID mismatch")
	errQuestion    = errors.New("question mismatch")
	errQuestionCnt = errors.New("question count is not 1")
)

func msgID(m []byte) uint16     { return binary.BigEndian.Uint16(m) }
func setID(m []byte, id uint16) { binary.BigEndian.PutUint16(m, id) }
func isResponse(m []byte) bool  { return m[2]&flagQR != 0 }
func opcode(m []byte) int       { return int(m[2]&opcodeMask) >> 3 }
func rcode(m []byte) int        { return int(m[3] & rcodeMask) }
func qdcount(m []byte) int      { return int(binary.BigEndian.Uint16(m[4:])) }
func count(m []byte, i int) int { return int(binary.BigEndian.Uint16(m[4+2*i:])) }
func isGoodRcode(rc int) bool   { return rc == rcodeNoError || rc == rcodeNXDomain }

// question parses the single question of a query. It returns the offset
// just past it, the query type, and the name in lower case with a trailing
// dot ("." for the root). Compression pointers are not allowed in a query's
// question (nothing precedes it to point at).
func question(m []byte) (end int, qtype uint16, name string, err error) {
	var buf [maxNameWire]byte
	n := 0
	off := headerLen
	for {
		if off >= len(m) {
			return 0, 0, "", errTruncated
		}
		l := int(m[off])
		off++
		if l == 0 {
			break
		}
		// The wire form is one octet longer than the text form ("a." is
		// 1 a 0), and may not exceed 255 octets (RFC 1035 2.3.4).
		if l > 63 || off+l > len(m) || n+l+1 > maxNameWire-1 {
			return 0, 0, "", errBadName
		}
		for _, c := range m[off : off+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c == '.' || c == '\\' {
				// A dot inside a label is not a label boundary: escape it
				// (as presentation format does) so "ready.spartan" as one
				// label never routes like ready.spartan.
				if n+1 >= len(buf)-1 {
					return 0, 0, "", errBadName
				}
				buf[n] = '\\'
				n++
			}
			buf[n] = c
			n++
		}
		buf[n] = '.'
		n++
		off += l
	}
	if off+4 > len(m) {
		return 0, 0, "", errTruncated
	}
	if n == 0 {
		name = "."
	} else {
		name = string(buf[:n])
	}
	return off + 4, binary.BigEndian.Uint16(m[off:]), name, nil
}

// skipName returns the offset just past the (possibly compressed) name at off.
func skipName(m []byte, off int) (int, error) {
	for {
		if off >= len(m) {
			return 0, errTruncated
		}
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(m) {
				return 0, errTruncated
			}
			return off + 2, nil
		case l > 63:
			return 0, errBadName
		}
		off += 1 + l
	}
}

// validateReply checks an upstream packet against the query it answers:
// a response, with the query's ID and exactly its question (name compared
// case-insensitively, since resolvers may randomise case), and sections
// whose records all fit in the packet.
func validateReply(reply []byte, id uint16, q []byte) error {
	if len(reply) < headerLen {
		return errShort
	}
	if !isResponse(reply) {
		return errNotReply
	}
	if msgID(reply) != id {
		return errIDMismatch
	}
	if qdcount(reply) != 1 {
		return errQuestionCnt
	}
	end := headerLen + len(q)
	if end > len(reply) || !equalFold(reply[headerLen:end], q) {
		return errQuestion
	}
	off := end
	rrs := count(reply, 1) + count(reply, 2) + count(reply, 3)
	for range rrs {
		var err error
		if off, err = skipName(reply, off); err != nil {
			return err
		}
		if off+10 > len(reply) {
			return errTruncated
		}
		off += 10 + int(binary.BigEndian.Uint16(reply[off+8:]))
		if off > len(reply) {
			return errTruncated
		}
	}
	return nil
}

// equalFold compares two wire-format questions, ASCII case-insensitively.
// Label length bytes are < 64 and never letters, so folding them is harmless.
func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x != y {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			if 'A' <= y && y <= 'Z' {
				y += 'a' - 'A'
			}
			if x != y {
				return false
			}
		}
	}
	return true
}

// errorReply builds a header-and-question reply with the given rcode for
// query q: same ID, opcode and RD, QR and RA set (AA, TC, AD and CD clear),
// the question echoed when it parsed (qEnd > 0).
func errorReply(q []byte, qEnd int, rc int) []byte {
	n := headerLen
	if qEnd > 0 {
		n = qEnd
	}
	r := make([]byte, n)
	copy(r, q[:n])
	r[2] = flagQR | (q[2] & (opcodeMask | flagRD))
	r[3] = flagRA | byte(rc)
	clear(r[4:headerLen])
	if qEnd > 0 {
		r[5] = 1
	}
	return r
}

// notImplemented is the NOTIMP reply to a message whose opcode is not
// QUERY: the header alone, QR set, ID and opcode echoed, and no other flag.
// RD, RA, AA, AD and CD are defined for QUERY only, and BIND's NOTIMP
// carries none of them (SPEC, "Bad input").
func notImplemented(q []byte) []byte {
	r := errorReply(q, 0, rcodeNotImp)
	r[2] &^= flagRD
	r[3] &^= flagRA
	return r
}
