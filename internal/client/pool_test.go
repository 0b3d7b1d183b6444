package client

import (
	"testing"

	"github.com/alluvium/alluvium/internal/rpc"
)

func TestPoolSharesAndForgets(t *testing.T) {
	p := NewPool(rpc.ClientOptions{})
	a1, err := p.Get("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := p.Get("127.0.0.1:1")
	b, _ := p.Get("127.0.0.1:2")
	if a1 != a2 || a1 == b {
		t.Fatal("Get must return one connection per address")
	}
	p.Forget("127.0.0.1:1")
	a3, _ := p.Get("127.0.0.1:1")
	if a3 == a1 {
		t.Fatal("Forget must drop the connection")
	}
	p.Close()
	if c, err := p.Get("127.0.0.1:2"); err != nil || c == b {
		t.Fatalf("Get after Close = %v, %v; want a fresh connection", c, err)
	}
	p.Close()
}
