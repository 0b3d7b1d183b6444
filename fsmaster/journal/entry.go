package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// ErrCorrupt marks an entry or file whose bytes fail a check (checksum,
// framing, sequence). Errors wrapping it name the file and sequence.
var ErrCorrupt = errors.New("corrupt journal data")

// crcLen is the length of the CRC32C that prefixes every stored entry.
const crcLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seqKey is the bbolt key of sequence seq: 8 bytes big-endian, so bbolt's
// byte order is sequence order.
func seqKey(seq int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(seq))
	return k[:]
}

// EncodeEntry returns the stored key and value of e: key = big-endian
// e.Sequence, value = CRC32C(entry bytes) big-endian + deterministic
// protobuf encoding of e. e.Sequence must be positive.
func EncodeEntry(e *api.JournalEntry) (key, value []byte, err error) {
	if e == nil {
		return nil, nil, errors.New("journal: nil entry")
	}
	if e.Sequence <= 0 {
		return nil, nil, fmt.Errorf("journal: entry sequence %d is not positive", e.Sequence)
	}
	value, err = encodeValue(e)
	if err != nil {
		return nil, nil, err
	}
	return seqKey(e.Sequence), value, nil
}

// encodeValue is EncodeEntry's value alone (Append keeps no key: the
// writer builds each in one buffer as it puts it).
func encodeValue(e *api.JournalEntry) (value []byte, err error) {
	value = make([]byte, crcLen, crcLen+proto.Size(e))
	// The size just computed is cached in e and its messages, and nothing
	// changes them in between: the marshal need not size them again.
	value, err = proto.MarshalOptions{Deterministic: true, UseCachedSize: true}.MarshalAppend(value, e)
	if err != nil {
		return nil, fmt.Errorf("journal: marshal entry %d: %w", e.Sequence, err)
	}
	binary.BigEndian.PutUint32(value, crc32.Checksum(value[crcLen:], castagnoli))
	return value, nil
}

// DecodeEntry is the one decoder of stored entries. It checks the key
// framing, the CRC32C of the entry bytes, that they unmarshal, and that the
// entry's own sequence equals the key, so an entry that decodes is exactly
// the one that was written under that key. Errors wrap ErrCorrupt. The
// result does not alias key or value (they may point into a bbolt mmap).
func DecodeEntry(key, value []byte) (*api.JournalEntry, error) {
	if len(key) != 8 {
		return nil, fmt.Errorf("%w: key is %d bytes, want 8", ErrCorrupt, len(key))
	}
	u := binary.BigEndian.Uint64(key)
	if u == 0 || u > math.MaxInt64 {
		return nil, fmt.Errorf("%w: key sequence %d out of range", ErrCorrupt, u)
	}
	seq := int64(u)
	if len(value) < crcLen {
		return nil, fmt.Errorf("%w: entry %d: value is %d bytes, shorter than its checksum", ErrCorrupt, seq, len(value))
	}
	body := value[crcLen:]
	if want, got := binary.BigEndian.Uint32(value), crc32.Checksum(body, castagnoli); want != got {
		return nil, fmt.Errorf("%w: entry %d: checksum %08x, stored %08x", ErrCorrupt, seq, got, want)
	}
	e := new(api.JournalEntry)
	if err := proto.Unmarshal(body, e); err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, seq, err)
	}
	if e.Sequence != seq {
		return nil, fmt.Errorf("%w: entry under key %d carries sequence %d", ErrCorrupt, seq, e.Sequence)
	}
	return e, nil
}
