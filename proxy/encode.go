package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"iter"

	"github.com/alluvium/alluvium/sdk"
)

// pull turns a listing into a next function: (info, true, nil) per item,
// (nil, false, nil) at the end, (nil, false, err) on failure.
func pull(seq iter.Seq2[*sdk.FileInfo, error]) (func() (*sdk.FileInfo, bool, error), func()) {
	next, stop := iter.Pull2(seq)
	return func() (*sdk.FileInfo, bool, error) {
		info, err, ok := next()
		if !ok {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		return info, true, nil
	}, stop
}

// arrayEncoder writes a JSON array one element at a time.
type arrayEncoder struct {
	w *bufio.Writer
	n int
}

func newArrayEncoder(w io.Writer) *arrayEncoder {
	return &arrayEncoder{w: bufio.NewWriterSize(w, 64<<10)}
}

func (e *arrayEncoder) add(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if e.n == 0 {
		e.w.WriteByte('[')
	} else {
		e.w.WriteByte(',')
	}
	e.n++
	_, err = e.w.Write(b)
	return err
}

func (e *arrayEncoder) end() error {
	if e.n == 0 {
		e.w.WriteByte('[')
	}
	e.w.WriteByte(']')
	return e.w.Flush()
}
