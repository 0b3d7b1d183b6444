package fsmaster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// The FS masters' raft commands (embedded journal) are a type byte and a
// body. Types are append-only.
const (
	// cmdJournal carries a batch of journal entries of consecutive
	// sequences: the epoch of the leader that made them (u64), the first
	// sequence (u64), the count (u32), then per entry its length (u32) and
	// its stored value (journal.EncodeEntry: CRC32C + protobuf).
	cmdJournal byte = 1
	// cmdSetPeer records (or forgets) a member's rpc address: an
	// api.SetPeerCommand.
	cmdSetPeer byte = 2
)

const batchHeaderLen = 1 + 8 + 8 + 4

// errBadCommand marks a raft command that does not decode.
var errBadCommand = errors.New("bad FS master raft command")

// encodeBatch builds a cmdJournal command of entries first.. (their
// stored values, in order).
func encodeBatch(epoch uint64, first int64, vals [][]byte) []byte {
	n := batchHeaderLen
	for _, v := range vals {
		n += 4 + len(v)
	}
	b := make([]byte, batchHeaderLen, n)
	b[0] = cmdJournal
	binary.BigEndian.PutUint64(b[1:], epoch)
	binary.BigEndian.PutUint64(b[9:], uint64(first))
	binary.BigEndian.PutUint32(b[17:], uint32(len(vals)))
	for _, v := range vals {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// batch is a decoded cmdJournal command.
type batch struct {
	epoch   uint64
	entries []*api.JournalEntry
}

func (b *batch) first() int64 { return b.entries[0].GetSequence() }
func (b *batch) last() int64  { return b.entries[len(b.entries)-1].GetSequence() }

// decodeBatch decodes a cmdJournal command, checking each entry's checksum
// and that the sequences run on from the first without a gap.
func decodeBatch(data []byte) (*batch, error) {
	if len(data) < batchHeaderLen || data[0] != cmdJournal {
		return nil, fmt.Errorf("%w: journal batch of %d bytes", errBadCommand, len(data))
	}
	b := &batch{epoch: binary.BigEndian.Uint64(data[1:])}
	first := binary.BigEndian.Uint64(data[9:])
	count := binary.BigEndian.Uint32(data[17:])
	if first == 0 || first > 1<<62 || count == 0 || uint64(count) > uint64(len(data)) {
		return nil, fmt.Errorf("%w: journal batch from %d of %d entries", errBadCommand, first, count)
	}
	rest := data[batchHeaderLen:]
	b.entries = make([]*api.JournalEntry, 0, count)
	var key [8]byte
	for i := uint64(0); i < uint64(count); i++ {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: journal batch cut at entry %d of %d", errBadCommand, i, count)
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("%w: journal batch entry %d claims %d bytes, %d left", errBadCommand, i, n, len(rest)-4)
		}
		binary.BigEndian.PutUint64(key[:], first+i)
		e, err := journal.DecodeEntry(key[:], rest[4:4+n])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadCommand, err)
		}
		b.entries = append(b.entries, e)
		rest = rest[4+n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry of a journal batch", errBadCommand, len(rest))
	}
	return b, nil
}

func encodeSetPeer(c *api.SetPeerCommand) ([]byte, error) {
	b, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte{cmdSetPeer}, b...), nil
}

func decodeSetPeer(data []byte) (*api.SetPeerCommand, error) {
	if len(data) < 1 || data[0] != cmdSetPeer {
		return nil, fmt.Errorf("%w: not a set-peer command", errBadCommand)
	}
	var c api.SetPeerCommand
	if err := proto.Unmarshal(data[1:], &c); err != nil {
		return nil, fmt.Errorf("%w: set peer: %v", errBadCommand, err)
	}
	if c.GetId() == "" {
		return nil, fmt.Errorf("%w: set peer without an id", errBadCommand)
	}
	return &c, nil
}
