package s3

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
)

// objMeta is what S3 keeps about an object beyond its bytes: the ETag (the
// MD5 of a single PUT), Content-Type and friends, and x-amz-meta-*. The
// namespace has no place for it, so the gateway keeps it in a bbolt file in
// its staging dir, keyed by path and tied to the file's id and length: a
// file replaced or changed by other means is recognised and its stale
// metadata ignored.
type objMeta struct {
	FileID             int64             `json:"fileId"`
	Length             int64             `json:"length"`
	ETag               string            `json:"etag"` // without quotes
	ContentType        string            `json:"contentType,omitempty"`
	ContentEncoding    string            `json:"contentEncoding,omitempty"`
	ContentDisposition string            `json:"contentDisposition,omitempty"`
	ContentLanguage    string            `json:"contentLanguage,omitempty"`
	CacheControl       string            `json:"cacheControl,omitempty"`
	Expires            string            `json:"expires,omitempty"`
	Meta               map[string]string `json:"meta,omitempty"` // x-amz-meta-<name> (lower-case name) → value
	ChecksumAlgo       string            `json:"checksumAlgo,omitempty"`
	Checksum           string            `json:"checksum,omitempty"`
}

func (m *objMeta) matches(info *api.FileInfo) bool {
	return m != nil && m.FileID == info.GetFileId() && m.Length == info.GetLength()
}

// fallbackETag is the ETag of a file the gateway has no metadata for
// (written through the REST API, the CLI, or found in the UFS). It is
// stable while the file is unchanged, and ends in "-1" like a multipart
// ETag so that clients do not take it for the MD5 of the bytes.
func fallbackETag(info *api.FileInfo) string {
	sum := md5.Sum([]byte(fmt.Sprintf("%d/%d/%d", info.GetFileId(), info.GetLength(), info.GetLastModificationTimeMs())))
	return hex.EncodeToString(sum[:]) + "-1"
}

var metaBucket = []byte("objects")

// metaStore writes metadata behind the request: a put is visible at once
// (from memory) and made durable by one writer goroutine that commits
// whatever has queued in a single transaction — one fsync for many PUTs.
// Losing the newest entries in a crash costs only their ETag and headers.
type metaStore struct {
	db  *bolt.DB
	log *zap.Logger

	mu      sync.Mutex
	pending map[string]pendingMeta
	seq     uint64
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type pendingMeta struct {
	m   *objMeta // nil: delete
	seq uint64
}

func openMetaStore(dir string, log *zap.Logger) (*metaStore, error) {
	path := filepath.Join(dir, "s3meta.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("s3 metadata %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("s3 metadata %s: %w", path, err)
	}
	s := &metaStore{db: db, log: log, pending: map[string]pendingMeta{}, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.writer()
	return s, nil
}

func (s *metaStore) queue(path string, m *objMeta) {
	s.mu.Lock()
	s.seq++
	s.pending[path] = pendingMeta{m: m, seq: s.seq}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *metaStore) put(path string, m *objMeta) { s.queue(path, m) }
func (s *metaStore) del(path string)             { s.queue(path, nil) }

// get returns path's metadata if it belongs to the file info describes.
func (s *metaStore) get(path string, info *api.FileInfo) *objMeta {
	var m *objMeta
	s.view(func(lookup func(string) *objMeta) { m = lookup(path) })
	if !m.matches(info) {
		return nil
	}
	return m
}

// view runs f with a lookup over one read transaction (a listing page).
func (s *metaStore) view(f func(lookup func(path string) *objMeta)) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(metaBucket)
		f(func(path string) *objMeta {
			s.mu.Lock()
			p, ok := s.pending[path]
			s.mu.Unlock()
			if ok {
				return p.m
			}
			v := b.Get([]byte(path))
			if v == nil {
				return nil
			}
			var m objMeta
			if json.Unmarshal(v, &m) != nil {
				return nil
			}
			return &m
		})
		return nil
	})
}

// metaCoalesce is how long the writer lets puts gather after the first,
// so a burst of PUTs shares one fsync.
const metaCoalesce = 20 * time.Millisecond

func (s *metaStore) writer() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.flush()
			return
		}
		select {
		case <-time.After(metaCoalesce):
		case <-s.stop:
		}
		s.flush()
	}
}

// flush commits what is pending in one transaction.
func (s *metaStore) flush() {
	s.mu.Lock()
	batch := make(map[string]pendingMeta, len(s.pending))
	for k, v := range s.pending {
		batch[k] = v
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(metaBucket)
		for k, v := range batch {
			if v.m == nil {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
				continue
			}
			data, err := json.Marshal(v.m)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("writing S3 object metadata failed; ETags and headers of recent PUTs will not survive a restart", zap.Error(err))
		return
	}
	s.mu.Lock()
	for k, v := range batch {
		if cur, ok := s.pending[k]; ok && cur.seq == v.seq {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
}

func (s *metaStore) close() error {
	close(s.stop)
	<-s.done
	return s.db.Close()
}
