package rpc

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// UserHeader is the metadata key (and HTTP header) naming the user a call
// acts for. Only the system identity may name someone other than itself:
// that is how job workers and the proxy run things as the submitter.
const UserHeader = "x-alluvium-user"

// Identity is who a call is for, as the server established it.
type Identity struct {
	// User is the user the call acts for: a name from security.users, a
	// client certificate's CN, the superuser name for the cluster token, or
	// the user the system identity impersonates.
	User string
	// System is true for the cluster identity itself (the cluster token, or
	// a certificate whose CN is the superuser) acting for no one else.
	System bool
	// Via names the system identity that vouched for User (impersonation);
	// empty when the caller authenticated as User itself.
	Via string
}

// Trusted reports whether the call came from the cluster's own processes,
// for itself or on behalf of a user.
func (i Identity) Trusted() bool { return i.System || i.Via != "" }

type identityKey struct{}

// WithIdentity returns ctx carrying id (servers do this for every call).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// withIdentity is WithIdentity for the server's calls: the system
// identity, most calls' one, goes in boxed once.
func (a *authenticator) withIdentity(ctx context.Context, id Identity) context.Context {
	if id.System && id.Via == "" && id.User == a.superuser {
		return context.WithValue(ctx, identityKey{}, a.system)
	}
	return WithIdentity(ctx, id)
}

// IdentityFrom returns the identity of the call ctx belongs to. A context
// without one (an in-process call, a unit test) is the system itself.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ActAs returns ctx whose outgoing calls ask to act for user. The server
// honours it only for the system identity; any other caller may name only
// itself. An empty user returns ctx unchanged.
func ActAs(ctx context.Context, user string) context.Context {
	if user == "" {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(UserHeader, user)
	return metadata.NewOutgoingContext(ctx, md)
}

// ActingAs is the user ctx's outgoing calls ask to act for (ActAs; ""
// when none).
func ActingAs(ctx context.Context) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	return strings.Join(md.Get(UserHeader), ",")
}

// authenticator turns a call's credentials into an Identity.
type authenticator struct {
	token     string            // the cluster token: the system identity
	users     map[string]string // user → token
	superuser string            // the system identity's user name
	// required: calls without valid credentials are refused. Off only when
	// the server has no token, no users and no client CA.
	required bool
	log      *zap.Logger
	// The secrets as bytes once, not converted again on every call, and
	// the system identity boxed once for the calls' contexts.
	tokenBytes []byte
	userTokens []userToken
	system     any // Identity{User: superuser, System: true}
}

type userToken struct {
	user  string
	token []byte
}

func newAuthenticator(o ServerOptions, log *zap.Logger) *authenticator {
	a := &authenticator{token: o.Token, users: o.Users, superuser: o.Superuser, log: log}
	if a.superuser == "" {
		a.superuser = DefaultSuperuser
	}
	a.required = o.Token != "" || len(o.Users) > 0 || o.TLS != nil && o.TLS.ClientCAs != nil
	if a.token != "" {
		a.tokenBytes = []byte(a.token)
	}
	for u, tok := range a.users {
		if tok != "" {
			a.userTokens = append(a.userTokens, userToken{user: u, token: []byte(tok)})
		}
	}
	a.system = Identity{User: a.superuser, System: true}
	return a
}

// DefaultSuperuser names the system identity when no superuser is set.
const DefaultSuperuser = "alluvium"

// authError is a refused authentication: its status and the log reason.
type authError struct {
	code   codes.Code
	reason string
}

// fromToken resolves a bearer token ("" when none was sent).
func (a *authenticator) fromToken(got string) (Identity, bool) {
	if got == "" {
		return Identity{}, false
	}
	g := []byte(got)
	if a.tokenBytes != nil && subtle.ConstantTimeCompare(g, a.tokenBytes) == 1 {
		return Identity{User: a.superuser, System: true}, true
	}
	var who string
	for _, ut := range a.userTokens {
		// Every user's token is compared (no early exit): the time taken
		// says nothing about which one matched.
		if subtle.ConstantTimeCompare(g, ut.token) == 1 {
			who = ut.user
		}
	}
	if who != "" {
		return Identity{User: who, System: who == a.superuser}, true
	}
	return Identity{}, false
}

// fromCert resolves a verified client certificate chain to its CN.
func (a *authenticator) fromCert(chains [][]*x509.Certificate) (Identity, bool) {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Identity{}, false
	}
	cn := chains[0][0].Subject.CommonName
	if cn == "" {
		return Identity{}, false
	}
	return Identity{User: cn, System: cn == a.superuser}, true
}

// resolve establishes the identity from a bearer token, a verified client
// certificate and the requested user (UserHeader).
func (a *authenticator) resolve(bearer string, chains [][]*x509.Certificate, actAs string) (Identity, *authError) {
	var id Identity
	switch tid, ok := a.fromToken(bearer); {
	case ok:
		id = tid
	case bearer != "":
		return Identity{}, &authError{codes.Unauthenticated, "wrong token"}
	default:
		if cid, ok := a.fromCert(chains); ok {
			id = cid
		} else if a.required {
			return Identity{}, &authError{codes.Unauthenticated, "no token"}
		} else {
			// No authentication configured: every caller is trusted.
			id = Identity{User: a.superuser, System: true}
		}
	}
	if actAs == "" || actAs == id.User {
		return id, nil
	}
	if !id.System {
		return Identity{}, &authError{codes.PermissionDenied, "user " + id.User + " may not act as " + actAs + " (only the cluster identity may)"}
	}
	return Identity{User: actAs, Via: id.User}, nil
}

// grpcIdentity authenticates a gRPC call. The refusal is logged with the
// peer's address.
func (a *authenticator) grpcIdentity(ctx context.Context, method string) (Identity, error) {
	// The two keys, read where gRPC keeps them: FromIncomingContext would
	// copy the call's whole metadata on every call.
	var bearer, actAs string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		bearer = strings.TrimPrefix(v[0], "Bearer ")
	}
	if v := metadata.ValueFromIncomingContext(ctx, UserHeader); len(v) > 0 {
		actAs = v[0]
	}
	var chains [][]*x509.Certificate
	p, havePeer := peer.FromContext(ctx)
	if havePeer {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			chains = ti.State.VerifiedChains
		}
	}
	id, aerr := a.resolve(bearer, chains, actAs)
	if aerr == nil {
		return id, nil
	}
	who := "unknown"
	if havePeer && p.Addr != nil {
		who = p.Addr.String()
	}
	a.log.Warn("call refused", zap.String("peer", who), zap.String("method", method), zap.String("reason", aerr.reason))
	short := method[strings.LastIndexByte(method, '/')+1:]
	if aerr.code == codes.Unauthenticated {
		return Identity{}, status.Errorf(codes.Unauthenticated, "%s refused: %s; set ALLUVIUM_TOKEN (or --token, security.token-file) to the cluster token", short, aerr.reason)
	}
	return Identity{}, status.Errorf(aerr.code, "%s refused: %s", short, aerr.reason)
}

// tlsChains returns the verified client chains of a TLS connection state.
func tlsChains(cs *tls.ConnectionState) [][]*x509.Certificate {
	if cs == nil {
		return nil
	}
	return cs.VerifiedChains
}
