package sdk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakeMasters serves a scripted FS master and job master on one loopback
// port, through rpc.NewServer (the servers' own token and TLS handling), to
// check what each Dial option does on the wire. The real masters are
// exercised in tests/.
type fakeMasters struct {
	api.UnimplementedFileSystemMasterServer
	api.UnimplementedJobMasterServer
	addr string

	statCalls   atomic.Int32
	failFirst   int32         // GetStatus answers Unavailable this many times
	statDelay   time.Duration // GetStatus waits this long (or until the call's deadline)
	mu          sync.Mutex
	submitUsers []string
}

func startFake(t *testing.T, o rpc.ServerOptions, setup func(*fakeMasters)) *fakeMasters {
	t.Helper()
	f := &fakeMasters{}
	if setup != nil {
		setup(f)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	s := rpc.NewServer(o)
	api.RegisterFileSystemMasterServer(s, f)
	api.RegisterJobMasterServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeMasters) GetStatus(ctx context.Context, req *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	n := f.statCalls.Add(1)
	if n <= f.failFirst {
		return nil, status.Errorf(codes.Unavailable, "stat %s: not ready (call %d)", req.GetPath(), n)
	}
	if f.statDelay > 0 {
		select {
		case <-time.After(f.statDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: req.GetPath(), Length: 42}}, nil
}

func (f *fakeMasters) GetLeader(ctx context.Context, _ *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "jm0", LeaderRpcAddress: f.addr}, nil
}

func (f *fakeMasters) SubmitJob(ctx context.Context, req *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.submitUsers = append(f.submitUsers, md.Get("x-alluvium-user")...)
	f.mu.Unlock()
	return &api.SubmitJobResponse{JobId: 7}, nil
}

func TestDialRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string][]Option{
		"WithTimeout(0s)":           {WithTimeout(0)},
		"WithTimeout(-1s)":          {WithTimeout(-time.Second)},
		"WithRetries(-1)":           {WithRetries(-1)},
		"WithMaster: empty":         {WithMaster(" ")},
		"WithJobMasters: empty":     {WithJobMasters("localhost:1", "")},
		"WithTimeout(0s): want > 0": {WithMaster("localhost:1"), WithTimeout(0)},
	} {
		c, err := Dial(context.Background(), opts...)
		if err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded", name)
			continue
		}
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v is not ErrInvalidArgument", name, err)
		}
	}
}

func TestDialFromEnv(t *testing.T) {
	t.Setenv("ALLUVIUM_MASTER", "m:1")
	t.Setenv("ALLUVIUM_JOB_MASTER", "j1:2, j2:3,")
	t.Setenv("ALLUVIUM_TOKEN", "tok")
	c, err := Dial(context.Background(), FromEnv(), WithToken("later-wins"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.o.master != "m:1" || len(c.o.jobMasters) != 2 || c.o.jobMasters[1] != "j2:3" || c.o.token != "later-wins" {
		t.Fatalf("options from env: %+v", c.o)
	}
	d, err := Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.o.master != DefaultMaster || d.o.jobMasters[0] != DefaultJobMaster || d.o.timeout != 30*time.Second || d.o.retries != 3 {
		t.Fatalf("defaults: %+v", d.o)
	}
}

func TestWithToken(t *testing.T) {
	f := startFake(t, rpc.ServerOptions{Token: "s3cret"}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		opts []Option
		want error
	}{
		{nil, ErrUnauthenticated},
		{[]Option{WithToken("wrong")}, ErrUnauthenticated},
		{[]Option{WithToken("s3cret")}, nil},
	} {
		c, err := Dial(ctx, append([]Option{WithMaster(f.addr), WithJobMasters(f.addr)}, tc.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Stat(ctx, "/a")
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("Stat with %d options: %v, want %v", len(tc.opts), err, tc.want)
		}
		jobs, _ := c.Jobs()
		_, err = jobs.Submit(ctx, "load", LoadConfig{Path: "/a"})
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("Submit with %d options: %v, want %v", len(tc.opts), err, tc.want)
		}
		c.Close()
	}
}

func TestWithTLS(t *testing.T) {
	serverTLS, pool := selfSigned(t)
	f := startFake(t, rpc.ServerOptions{Token: "tok", TLS: serverTLS}, nil)
	ctx := context.Background()
	c, err := Dial(ctx, WithMaster(f.addr), WithJobMasters(f.addr), WithToken("tok"), WithTLS(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if info, err := c.Stat(ctx, "/secure"); err != nil || info.GetLength() != 42 {
		t.Fatalf("Stat over TLS: %v, %v", info, err)
	}
	jobs, _ := c.Jobs()
	if id, err := jobs.Submit(ctx, "load", LoadConfig{Path: "/a"}); err != nil || id != 7 {
		t.Fatalf("Submit over TLS: %d, %v", id, err)
	}
	// Plain text against a TLS server fails, and so does a client that does
	// not trust the server's certificate.
	for name, opt := range map[string]Option{"plain": WithToken("tok"), "untrusted": WithTLS(&tls.Config{})} {
		d, err := Dial(ctx, WithMaster(f.addr), WithRetries(0), WithTimeout(5*time.Second), opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Stat(ctx, "/secure"); err == nil {
			t.Errorf("%s client reached a TLS server", name)
		}
		d.Close()
	}
}

func TestWithTimeout(t *testing.T) {
	f := startFake(t, rpc.ServerOptions{}, func(f *fakeMasters) { f.statDelay = time.Minute })
	c, err := Dial(context.Background(), WithMaster(f.addr), WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Stat(context.Background(), "/slow")
	if !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("Stat of a hanging master: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Stat took %s with WithTimeout(100ms)", took)
	}
}

func TestWithRetries(t *testing.T) {
	for _, tc := range []struct {
		retries   int
		wantCalls int32
		wantErr   error
	}{
		{0, 1, ErrUnavailable},
		{1, 2, ErrUnavailable},
		{3, 3, nil}, // fails twice, succeeds on the third call
	} {
		f := startFake(t, rpc.ServerOptions{}, func(f *fakeMasters) { f.failFirst = 2 })
		c, err := Dial(context.Background(), WithMaster(f.addr), WithRetries(tc.retries))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Stat(context.Background(), "/flaky")
		if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("WithRetries(%d): %v, want %v", tc.retries, err, tc.wantErr)
		}
		if n := f.statCalls.Load(); n != tc.wantCalls {
			t.Errorf("WithRetries(%d): %d calls, want %d", tc.retries, n, tc.wantCalls)
		}
		c.Close()
	}
}

// Any of the configured job masters will do: an unreachable first one is
// passed over. WithUser names the submitter.
func TestWithJobMastersAndUser(t *testing.T) {
	f := startFake(t, rpc.ServerOptions{}, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	c, err := Dial(context.Background(), WithMaster(f.addr), WithJobMasters(deadAddr, f.addr), WithUser("etl-bot"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	jobs, err := c.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	l, err := jobs.Leader(context.Background())
	if err != nil || l.GetLeaderRpcAddress() != f.addr {
		t.Fatalf("Leader: %v, %v", l, err)
	}
	if _, err := jobs.Submit(context.Background(), "load", LoadConfig{Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submitUsers) != 1 || f.submitUsers[0] != "etl-bot" {
		t.Fatalf("submitter %v, want etl-bot", f.submitUsers)
	}
	none, _ := Dial(context.Background(), WithJobMasters())
	if _, err := none.Jobs(); err == nil {
		t.Error("Jobs() with no job master address succeeded")
	}
	none.Close()
}

// selfSigned returns a server TLS config for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "alluvium test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}
