package cache

import (
	"encoding/binary"
	"sync/atomic"
)

// Entry is one cached reply. Everything but the atomics is immutable once
// the entry is in the store: a refresh replaces the entry, so a reader that
// holds one needs no lock to render it.
type Entry struct {
	key     string
	msg     []byte   // the upstream's reply, COOKIE option removed, original TTLs
	ttls    []uint16 // offsets of the TTL field of every record outside OPT
	nameEnd int      // end of the question name in msg
	optLen  int      // offset of the OPT record's RDLENGTH; 0: no OPT
	optEnd  int      // offset just past the OPT record's RDATA
	stored  int64    // clock when cached
	expires int64    // stored + lifetime
	life    int64    // lifetime in ns
	kind    uint8    // the caller's route kind (for its per-route counters)

	slot       int          // index in its shard's ring (guarded by the shard's lock)
	ref        atomic.Bool  // hit since the eviction hand last passed (CLOCK)
	recheck    atomic.Int64 // after a failed refresh: stale at once until this clock
	prefetched atomic.Bool  // one prefetch per entry
}

// Kind is the route kind the entry was stored with.
func (e *Entry) Kind() int { return int(e.kind) }

// Size is the entry's length in bytes when rendered fresh.
func (e *Entry) Size() int { return len(e.msg) }

// footprint is what Stats counts as an entry's bytes: reply, key and TTL
// offsets (not the Go object and map overheads).
func (e *Entry) footprint() int64 { return int64(len(e.msg) + len(e.key) + 2*len(e.ttls)) }

// ede3 is the Extended DNS Error option (RFC 8914) with INFO-CODE 3, Stale
// Answer, and no EXTRA-TEXT.
var ede3 = [...]byte{0, 15, 0, 2, 0, 3}

// EDELen is how much a stale answer to an EDNS query grows.
const EDELen = len(ede3)

// Lifetime rules, from SPEC "What is cached".
type lifetimeRules struct {
	maxTTL, negMaxTTL uint32 // seconds
}

// lifetime returns how long reply may be cached, in seconds (0: not at
// all), and the TTL offsets, OPT position and COOKIE span found while
// walking it. reply must have passed the forwarder's validateReply.
//
// Readings (RFC 2308, where the spec leaves room): a reply is negative when
// it is NXDOMAIN or a NOERROR without answer records (a CNAME chain that
// ends in no data is positive here: its lifetime is its smallest TTL, as
// for any answer); a TTL with the top bit set counts as 0 (RFC 2181 8).
func (r lifetimeRules) walk(reply []byte, nameEnd int) (p parsed, ok bool) {
	off := nameEnd + 4
	if len(reply) < off || off < headerLen+5 {
		return p, false // the question must be there (the forwarder validated it)
	}
	an, ns, ar := int(be16(reply[6:])), int(be16(reply[8:])), int(be16(reply[10:]))
	minTTL := uint32(1<<32 - 1)
	soaTTL, soaMin, soa := uint32(0), uint32(0), false
	p.ttls = make([]uint16, 0, an+ns+ar)
	for i := range an + ns + ar {
		var err bool
		if off, err = skipName(reply, off); err || off+10 > len(reply) {
			return p, false
		}
		typ := be16(reply[off:])
		ttl := be32(reply[off+4:])
		if ttl > 1<<31-1 {
			ttl = 0
		}
		rdlen := int(be16(reply[off+8:]))
		rdata := off + 10
		if rdata+rdlen > len(reply) || off+4 > 65535 {
			return p, false
		}
		switch {
		case typ == typeOPT && i >= an+ns:
			if p.optLen != 0 {
				return p, false // two OPT records: FORMERR material, not cache material
			}
			p.optLen, p.optEnd = off+8, rdata+rdlen
			p.cookieOff, p.cookieLen = findOption(reply[rdata:rdata+rdlen], optCookie)
			if p.cookieLen > 0 {
				p.cookieOff += rdata
			}
		default:
			p.ttls = append(p.ttls, uint16(off+4))
			if i < an+ns {
				minTTL = min(minTTL, ttl)
			}
			if typ == 6 && i >= an && i < an+ns && rdlen >= 22 { // SOA: MINIMUM is its last field
				soa = true
				soaTTL, soaMin = ttl, be32(reply[rdata+rdlen-4:])
			}
		}
		off = rdata + rdlen
	}
	rc := reply[3] & 0x0f
	switch {
	case reply[2]&0x02 != 0: // TC: the client must retry over TCP
	case reply[2]&0x78 != 0: // not a QUERY reply
	case rc == 3 || (rc == 0 && an == 0):
		if soa {
			p.life = min(soaTTL, soaMin, r.negMaxTTL)
			p.negative = true
		}
	case rc == 0:
		p.life = min(minTTL, r.maxTTL)
	}
	return p, true
}

// parsed is what walk found in a reply.
type parsed struct {
	ttls                 []uint16
	optLen, optEnd       int
	cookieOff, cookieLen int // the whole COOKIE option (code, length, data); 0: none
	life                 uint32
	negative             bool
}

// findOption returns the offset and length (header included) of the first
// option code in an OPT RDATA, or 0, 0.
func findOption(rd []byte, code uint16) (int, int) {
	for o := 0; o+4 <= len(rd); {
		l := int(be16(rd[o+2:]))
		if be16(rd[o:]) == code {
			return o, min(4+l, len(rd)-o)
		}
		o += 4 + l
	}
	return 0, 0
}

// skipName returns the offset just past the (possibly compressed) name at
// off; err on a malformed name.
func skipName(m []byte, off int) (int, bool) {
	for {
		if off >= len(m) {
			return 0, true
		}
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1, false
		case l&0xC0 == 0xC0:
			if off+2 > len(m) {
				return 0, true
			}
			return off + 2, false
		case l > 63:
			return 0, true
		}
		off += 1 + l
	}
}

// newEntry builds the entry for reply, the upstream's validated answer to
// query q, with the COOKIE option taken out (it answered another client's
// cookie). ok is false when the reply does not parse; a reply that parses
// but may not be cached gets an entry with zero lifetime (waiters are still
// answered from it).
func newEntry(r lifetimeRules, reply []byte, q *Query, now int64, kind int) (*Entry, bool) {
	p, ok := r.walk(reply, q.NameEnd)
	if !ok {
		return nil, false
	}
	msg := make([]byte, 0, len(reply)-p.cookieLen)
	if p.cookieLen > 0 {
		msg = append(msg, reply[:p.cookieOff]...)
		msg = append(msg, reply[p.cookieOff+p.cookieLen:]...)
		binary.BigEndian.PutUint16(msg[p.optLen:], be16(reply[p.optLen:])-uint16(p.cookieLen))
		p.optEnd -= p.cookieLen
		for i, o := range p.ttls {
			if int(o) > p.cookieOff {
				p.ttls[i] = o - uint16(p.cookieLen)
			}
		}
	} else {
		msg = append(msg, reply...)
	}
	life := int64(p.life) * 1e9
	e := &Entry{
		key: string(q.Key), msg: msg, ttls: p.ttls, nameEnd: q.NameEnd,
		optLen: p.optLen, optEnd: p.optEnd,
		stored: now, expires: now + life, life: life, kind: uint8(kind),
	}
	return e, true
}

// Render writes the entry's answer for one client into dst and returns its
// length: the client's ID and question name (its letter case) from query,
// every TTL outside OPT decreased by the whole seconds the entry has spent
// in the cache, or set to staleTTL when stale, and, when stale and ede, the
// EDE 3 option appended to the OPT record. It returns 0 when dst is too
// small. It never allocates.
func (e *Entry) Render(dst, query []byte, now int64, stale, ede bool, staleTTL uint32) int {
	grow := 0
	if stale && ede && e.optLen != 0 {
		grow = EDELen
	}
	n := len(e.msg) + grow
	if n > len(dst) || len(query) < e.nameEnd {
		return 0
	}
	if grow == 0 {
		copy(dst, e.msg)
	} else {
		copy(dst, e.msg[:e.optEnd])
		copy(dst[e.optEnd:], ede3[:])
		copy(dst[e.optEnd+grow:], e.msg[e.optEnd:])
		binary.BigEndian.PutUint16(dst[e.optLen:], be16(e.msg[e.optLen:])+uint16(grow))
	}
	copy(dst[:2], query[:2])
	copy(dst[headerLen:e.nameEnd], query[headerLen:e.nameEnd])
	age := uint32(max(0, (now-e.stored)/1e9))
	for _, o := range e.ttls {
		ttl := staleTTL
		if !stale {
			ttl = be32(e.msg[o:])
			if ttl > 1<<31-1 {
				ttl = 0
			}
			ttl -= min(ttl, age)
		}
		d := int(o)
		if d >= e.optEnd {
			d += grow
		}
		binary.BigEndian.PutUint32(dst[d:], ttl)
	}
	return n
}
