package forwarder

import "encoding/binary"

// WellFormed reports whether m parses as a DNS message: a header, then
// exactly the questions and records its counts announce, ending at its
// last byte. It checks structure only (names, lengths), not meaning: a
// message with an unsupported opcode or several questions is well formed,
// and gets its NOTIMP or FORMERR. The TCP listener uses it to tell a
// client that is out of step with its own framing (a length prefix that
// cuts a message or runs past it, or no DNS at all) from one that asked
// something odd: the first gets its connection closed, not a reply built
// from random header bits.
func WellFormed(m []byte) bool {
	if len(m) < headerLen {
		return false
	}
	off := headerLen
	for section := range 4 {
		for range count(m, section) {
			end, err := skipName(m, off)
			if err != nil {
				return false
			}
			off = end
			if section == 0 { // a question: type and class
				off += 4
			} else { // a record: type, class, TTL, RDLENGTH, RDATA
				if off+10 > len(m) {
					return false
				}
				off += 10 + int(binary.BigEndian.Uint16(m[off+8:]))
			}
			if off > len(m) {
				return false
			}
		}
	}
	return off == len(m)
}
