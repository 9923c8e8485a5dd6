package cache

import (
	"encoding/binary"
	"hash/maphash"
)

// MaxKey bounds a key's length. A query whose key would be longer (EDNS
// options of more than a couple of hundred bytes) bypasses the cache: it is
// rare, and a bound keeps the key on the caller's stack.
const MaxKey = 512

// KeyBuf is the caller's scratch for one query's key.
type KeyBuf [MaxKey]byte

// EDNS option codes the key ignores: a COOKIE (RFC 7873) is per client and
// never shapes the answer; PADDING (RFC 7830) only changes the size.
const (
	optCookie  = 10
	optPadding = 12
	typeOPT    = 41
	headerLen  = 12
)

// Key flag bits, the first byte of a key.
const (
	keyRD  = 1 << iota // recursion desired
	keyCD              // checking disabled
	keyAD              // the query's AD bit (RFC 6840 5.7: the client wants AD set in the reply)
	keyTCP             // came over TCP: the upstream is asked over TCP, its reply may exceed any UDP size
	keyOPT             // the query has an OPT record
)

// Query is what the cache read from one client query: its key and what
// serving it needs.
type Query struct {
	Key     []byte // in the caller's KeyBuf
	Hash    uint64
	NameEnd int  // offset just past the question name
	EDNS    bool // the query has an OPT record (a stale answer then carries EDE 3)
	Limit   int  // the largest reply the client's transport allows
}

// ParseQuery reads q (a raw client query) into a cache query. It returns
// false when the query must bypass the cache: malformed, not a plain
// one-question QUERY, a section that a query does not normally carry
// (answer or authority records, TSIG or any additional record but one OPT),
// or a key longer than MaxKey. The key is, in order: the flags byte, QTYPE
// and QCLASS, for EDNS the OPT TTL field (extended RCODE, version, DO and
// the other flags) and UDP payload size, the question name in lower case
// (wire form), then every EDNS option but COOKIE and PADDING as sent.
func (c *Cache) ParseQuery(q []byte, tcp bool, buf *KeyBuf) (Query, bool) {
	if len(q) < headerLen || q[2]&0x80 != 0 || q[2]&0x78 != 0 {
		return Query{}, false
	}
	if be16(q[4:]) != 1 || be16(q[6:]) != 0 || be16(q[8:]) != 0 || be16(q[10:]) > 1 {
		return Query{}, false
	}
	k := buf[:0]
	var flags byte
	if q[2]&0x01 != 0 {
		flags |= keyRD
	}
	if q[3]&0x10 != 0 {
		flags |= keyCD
	}
	if q[3]&0x20 != 0 {
		flags |= keyAD
	}
	if tcp {
		flags |= keyTCP
	}
	k = append(k, flags, 0, 0, 0, 0) // type, class below
	// The name, lower-cased; no compression in a query's question.
	off := headerLen
	for {
		if off >= len(q) {
			return Query{}, false
		}
		l := int(q[off])
		if l > 63 || off+1+l > len(q) || len(k)+1+l > 5+255 {
			return Query{}, false
		}
		k = append(k, byte(l))
		off++
		if l == 0 {
			break
		}
		for _, ch := range q[off : off+l] {
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			k = append(k, ch)
		}
		off += l
	}
	nameEnd := off
	if off+4 > len(q) {
		return Query{}, false
	}
	copy(k[1:5], q[off:off+4])
	off += 4
	res := Query{NameEnd: nameEnd, Limit: 512}
	if tcp {
		res.Limit = 65535
	}
	if be16(q[10:]) == 1 {
		// The one additional record must be an OPT for the root, and the
		// last thing in the packet.
		if off+11 > len(q) || q[off] != 0 || be16(q[off+1:]) != typeOPT {
			return Query{}, false
		}
		k[0] |= keyOPT
		payload := be16(q[off+3:])
		k = append(k, q[off+5:off+9]...) // extended RCODE, version, DO and Z
		k = append(k, q[off+3], q[off+4])
		rdlen := int(be16(q[off+9:]))
		off += 11
		if off+rdlen != len(q) {
			return Query{}, false
		}
		for o := off; o < off+rdlen; {
			if o+4 > off+rdlen {
				return Query{}, false
			}
			code, olen := be16(q[o:]), int(be16(q[o+2:]))
			if o+4+olen > off+rdlen {
				return Query{}, false
			}
			if code != optCookie && code != optPadding {
				if len(k)+4+olen > MaxKey {
					return Query{}, false
				}
				k = append(k, q[o:o+4+olen]...)
			}
			o += 4 + olen
		}
		off += rdlen
		res.EDNS = true
		if !tcp {
			res.Limit = max(512, int(payload)) // RFC 6891 6.2.5: below 512 means 512
		}
	} else if off != len(q) {
		return Query{}, false
	}
	res.Key = k
	res.Hash = maphash.Bytes(c.seed, k)
	return res, true
}

// keyName returns the wire-form question name inside a key.
func keyName(k []byte) []byte {
	off := 5
	for off < len(k) && k[off] != 0 {
		off += 1 + int(k[off])
	}
	return k[5 : off+1]
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
