package raftgroup

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// A raft port is as much a way into a master as its gRPC port: a stranger
// able to speak raft could append commands. authLayer is the raft
// transport's stream layer with the cluster's authentication: TLS when
// security.tls is on (client certificates when a client CA is set), and,
// when there is a cluster token, a challenge on every connection — the
// listener sends its group's magic and a random nonce and the dialler
// answers with HMAC-SHA256(token, magic+nonce), so the token itself never
// crosses the wire, and a member of one group (job masters) cannot join
// another (FS masters) by mistake. A connection that fails is closed and
// logged with its peer.
type authLayer struct {
	magic  string // raftMagicLen bytes naming the group
	ln     net.Listener
	adv    net.Addr
	token  []byte
	srvTLS *tls.Config // nil: plain TCP
	cliTLS *tls.Config
	log    *zap.Logger

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

// Group magics: the first bytes a member's raft port sends.
const (
	JobMasterMagic = "ALVRAFT1"
	FSMasterMagic  = "ALVFSRF1"
)

const (
	raftMagicLen  = 8
	raftNonceLen  = 32
	raftHandshake = 5 * time.Second
)

// newAuthLayer listens on bind and advertises adv.
func newAuthLayer(magic, bind string, adv net.Addr, token string, srvTLS, cliTLS *tls.Config, log *zap.Logger) (*authLayer, error) {
	if len(magic) != raftMagicLen {
		return nil, fmt.Errorf("raft group magic %q: want %d bytes", magic, raftMagicLen)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	l := &authLayer{magic: magic, ln: ln, adv: adv, token: []byte(token), srvTLS: srvTLS, cliTLS: cliTLS, log: log,
		conns: make(chan net.Conn), done: make(chan struct{})}
	if ta, ok := adv.(*net.TCPAddr); adv == nil || ok && ta.Port == 0 {
		l.adv = ln.Addr()
		if ok && ta.IP != nil {
			l.adv = &net.TCPAddr{IP: ta.IP, Port: ln.Addr().(*net.TCPAddr).Port}
		}
	}
	go l.acceptLoop()
	return l, nil
}

func (l *authLayer) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// Each handshake runs on its own so a slow or silent peer cannot
		// hold up the members' connections.
		go l.admit(c)
	}
}

// admit authenticates an accepted connection and hands it to raft.
func (l *authLayer) admit(c net.Conn) {
	if err := l.serverHandshake(&c); err != nil {
		l.log.Warn("raft connection refused", zap.String("peer", c.RemoteAddr().String()), zap.Error(err))
		c.Close()
		return
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *authLayer) serverHandshake(c *net.Conn) error {
	_ = (*c).SetDeadline(time.Now().Add(raftHandshake))
	if l.srvTLS != nil {
		tc := tls.Server(*c, l.srvTLS)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		*c = tc
	}
	if len(l.token) > 0 {
		nonce := make([]byte, raftNonceLen)
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		if _, err := (*c).Write(append([]byte(l.magic), nonce...)); err != nil {
			return fmt.Errorf("send challenge: %w", err)
		}
		got := make([]byte, sha256.Size)
		if _, err := io.ReadFull(*c, got); err != nil {
			return fmt.Errorf("no answer to the challenge: %w", err)
		}
		if !hmac.Equal(got, raftMAC(l.token, l.magic, nonce)) {
			return errors.New("wrong cluster token")
		}
	}
	return (*c).SetDeadline(time.Time{})
}

func raftMAC(token []byte, magic string, nonce []byte) []byte {
	m := hmac.New(sha256.New, token)
	m.Write([]byte(magic))
	m.Write(nonce)
	return m.Sum(nil)
}

// Dial implements raft.StreamLayer.
func (l *authLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if err := l.clientHandshake(&c, string(addr), timeout); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft %s: %w", addr, err)
	}
	return c, nil
}

func (l *authLayer) clientHandshake(c *net.Conn, addr string, timeout time.Duration) error {
	if timeout <= 0 || timeout > raftHandshake {
		timeout = raftHandshake
	}
	_ = (*c).SetDeadline(time.Now().Add(timeout))
	if l.cliTLS != nil {
		conf := l.cliTLS.Clone()
		if conf.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				conf.ServerName = host
			}
		}
		tc := tls.Client(*c, conf)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		*c = tc
	}
	if len(l.token) > 0 {
		hello := make([]byte, raftMagicLen+raftNonceLen)
		if _, err := io.ReadFull(*c, hello); err != nil {
			return fmt.Errorf("no challenge (is it a member of this cluster's group, with a token?): %w", err)
		}
		if got := string(hello[:raftMagicLen]); got != l.magic {
			if got == JobMasterMagic || got == FSMasterMagic {
				return fmt.Errorf("the raft port belongs to the other group (%s, not %s): check the peers' raft ports", groupName(got), groupName(l.magic))
			}
			return errors.New("not an Alluvium raft port")
		}
		if _, err := (*c).Write(raftMAC(l.token, l.magic, hello[raftMagicLen:])); err != nil {
			return err
		}
	}
	return (*c).SetDeadline(time.Time{})
}

// Accept implements net.Listener: the next authenticated connection.
func (l *authLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *authLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr implements net.Listener: the advertised address.
func (l *authLayer) Addr() net.Addr { return l.adv }

func groupName(magic string) string {
	switch magic {
	case JobMasterMagic:
		return "job masters"
	case FSMasterMagic:
		return "FS masters"
	}
	return "unknown"
}
