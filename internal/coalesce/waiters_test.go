package coalesce_test

import (
	"context"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/coalesce"
)

// The batch's context lives while any waiter does, ends when the last one
// gives up, and is released by its stop.
func TestWhileAnyWaits(t *testing.T) {
	a, cancelA := context.WithCancel(context.Background())
	b, cancelB := context.WithCancel(context.Background())
	ctx, stop := coalesce.WhileAnyWaits(context.Background(), []context.Context{a, b})
	defer stop()
	cancelA()
	if ctx.Err() != nil {
		t.Fatal("the batch ended while a waiter still waits")
	}
	cancelB()
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("the batch did not end after every waiter gave up")
	}

	// A waiter that never ends keeps it until stop.
	c, cancelC := context.WithCancel(context.Background())
	ctx2, stop2 := coalesce.WhileAnyWaits(context.Background(), []context.Context{c, context.Background()})
	cancelC()
	if ctx2.Err() != nil {
		t.Fatal("the batch ended although a waiter never ends")
	}
	stop2()
	if ctx2.Err() == nil {
		t.Fatal("stop did not release the batch's context")
	}
}
