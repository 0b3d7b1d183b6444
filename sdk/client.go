package sdk

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Default addresses, as DESIGN.md fixes them.
const (
	DefaultMaster    = "localhost:19998"
	DefaultJobMaster = "localhost:20001"
)

type options struct {
	master       string
	jobMasters   []string
	token        string
	tls          *tls.Config
	timeout      time.Duration
	retries      int
	user         string
	localHosts   []string
	writeType    api.WriteType
	readType     api.ReadType
	blockSize    int64
	shortCircuit bool
	noDomainSock bool // WithDomainSocket(false)
}

// Option configures Dial.
type Option func(*options)

// WithMaster sets the FS masters' rpc addresses: host:port, or a
// comma-separated list of them; calls go to whichever leads.
func WithMaster(addr string) Option { return func(o *options) { o.master = addr } }

// WithJobMasters sets the job masters' rpc addresses; any of them will do.
func WithJobMasters(addrs ...string) Option {
	return func(o *options) { o.jobMasters = append([]string(nil), addrs...) }
}

// WithToken sets the cluster token sent with every call.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS enables TLS (and mTLS when cfg holds a client certificate).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithTimeout bounds each unary call (default 30s). Streams are bounded by
// the caller's context only.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetries sets how often an idempotent file-system call is retried
// when the FS master is unavailable (default 3; 0: never), with backoff
// from 50ms. Job calls are different: they follow the job-master leader
// and keep retrying while a new one is elected, for up to 20s or the
// WithTimeout, whichever is longer.
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithUser makes every call act for the named user: the cluster checks
// that user's permissions and records it as the owner of what it creates
// and the submitter of its jobs. Only the cluster token (the system
// identity) may act for another user; with a user's own token or
// certificate the calls are that user's anyway. AsUser does the same for
// one call.
func WithUser(name string) Option { return func(o *options) { o.user = name } }

// AsUser returns ctx whose calls act for user, overriding WithUser (a
// gateway serving many users with the cluster token uses it per request).
func AsUser(ctx context.Context, user string) context.Context { return rpc.ActAs(ctx, user) }

// WithWriteType sets the default write type of Create.
func WithWriteType(t api.WriteType) Option { return func(o *options) { o.writeType = t } }

// WithReadType sets the default read type of Open.
func WithReadType(t api.ReadType) Option { return func(o *options) { o.readType = t } }

// WithShortCircuit turns direct reads of block files on this host on or off
// (default on).
func WithShortCircuit(on bool) Option { return func(o *options) { o.shortCircuit = on } }

// WithLocalHosts names the hosts that count as "this machine" when choosing
// a worker to read from (default: localhost, 127.0.0.1 and os.Hostname).
func WithLocalHosts(hosts ...string) Option {
	return func(o *options) { o.localHosts = append([]string(nil), hosts...) }
}

// FromEnv reads ALLUVIUM_MASTER, ALLUVIUM_JOB_MASTER and ALLUVIUM_TOKEN.
// Later options override it.
func FromEnv() Option {
	return func(o *options) {
		if v := os.Getenv("ALLUVIUM_MASTER"); v != "" {
			o.master = v
		}
		if v := os.Getenv("ALLUVIUM_JOB_MASTER"); v != "" {
			o.jobMasters = SplitAddrs(v)
		}
		if v := os.Getenv("ALLUVIUM_TOKEN"); v != "" {
			o.token = v
		}
	}
}

// SplitAddrs splits a comma-separated address list, as ALLUVIUM_MASTER,
// ALLUVIUM_JOB_MASTER and the client.* config keys hold them, into its
// non-empty entries.
func SplitAddrs(list string) []string { return client.SplitAddrs(list) }

// IsHostPort reports whether a is host:port with a port.
func IsHostPort(a string) bool { return client.IsHostPort(a) }

// Client is a connection to an Alluvium cluster. It is safe for concurrent
// use; Close it when done.
type Client struct {
	o      options
	fsm    *client.FSMaster // follows the leading FS master (internal/client)
	fs     api.FileSystemMasterClient
	blocks api.BlockMasterClient
	// Concurrent Stat, Create and Close calls are joined into batch RPCs
	// (batch.go).
	stats     *joiner[*api.GetStatusRequest]
	creates   *joiner[*api.CreateFileRequest]
	completes *joiner[*api.CompleteFileRequest]

	mu      sync.Mutex
	workers *client.Pool      // block workers, by host:port or unix:socket
	wcache  workerCache       // live block workers (workers.go)
	dsocks  map[string]string // worker address → "unix:" + its socket, "": none (workers.go)

	jobsOnce sync.Once
	jobs     *Jobs
	jobsErr  error
}

// Dial connects to the cluster. Connections are made lazily; Dial fails only
// on bad options (an empty address, a timeout <= 0, negative retries).
func Dial(ctx context.Context, opts ...Option) (*Client, error) {
	o := options{
		master:       DefaultMaster,
		jobMasters:   []string{DefaultJobMaster},
		timeout:      30 * time.Second,
		retries:      3,
		shortCircuit: true,
	}
	for _, f := range opts {
		f(&o)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if len(o.localHosts) == 0 {
		o.localHosts = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil {
			o.localHosts = append(o.localHosts, h)
		}
	}
	fsm, err := client.NewFSMaster([]string{o.master}, o.clientOptions())
	if err != nil {
		return nil, fmt.Errorf("sdk: FS master %s: %w", o.master, err)
	}
	c := &Client{
		o:       o,
		fsm:     fsm,
		fs:      fsm.FS(),
		blocks:  fsm.BlockMaster(),
		workers: client.NewPool(o.clientOptions().Auth),
	}
	c.joiners()
	return c, nil
}

func (o options) check() error {
	bad := func(format string, args ...any) error {
		return &Error{Op: "dial", Message: fmt.Sprintf(format, args...), Code: codes.InvalidArgument, kind: ErrInvalidArgument}
	}
	switch {
	case len(SplitAddrs(o.master)) == 0:
		return bad("WithMaster: empty address")
	case o.timeout <= 0:
		return bad("WithTimeout(%s): want > 0", o.timeout)
	case o.retries < 0:
		return bad("WithRetries(%d): want >= 0", o.retries)
	}
	for _, a := range o.jobMasters {
		if strings.TrimSpace(a) == "" {
			return bad("WithJobMasters: empty address")
		}
	}
	return nil
}

// clientOptions are the client layer's options: this client's
// authentication, per-call timeout and retries.
func (o options) clientOptions() client.Options {
	return client.Options{
		Auth:        rpc.ClientOptions{Token: o.token, TLS: o.tls, User: o.user},
		CallTimeout: o.timeout, Retries: o.retries, ElectionWait: client.DefaultElectionWait,
	}
}

// Close releases every connection.
func (c *Client) Close() error {
	c.workers.Close()
	if c.jobs != nil {
		c.jobs.close()
	}
	return c.fsm.Close()
}

// worker returns a block-worker client for addr (host:port), reusing
// connections.
func (c *Client) worker(addr string) (api.BlockWorkerClient, error) {
	return c.workers.BlockWorker(addr)
}

// isLocalHost reports whether host names this machine.
func (c *Client) isLocalHost(host string) bool {
	for _, h := range c.o.localHosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// call runs a unary call against the FS master. The client layer bounds
// each attempt by the client's timeout, follows the leader and resends the
// call after a lost connection when idempotent is set (reads are anyway);
// call names op and path in the error.
func (c *Client) call(ctx context.Context, op, path string, idempotent bool, f func(ctx context.Context) error) error {
	if idempotent {
		ctx = client.Idempotent(ctx)
	}
	return wrapErr(op, path, f(ctx))
}
