package blockworker

import (
	"container/list"
	"fmt"
	"iter"
)

// Evictor orders cached blocks for eviction. The store calls it with its
// own lock held, so implementations need no locking of their own, and it
// decides itself which victims it may take (never pinned blocks or blocks in
// use): the evictor only ranks.
type Evictor interface {
	// Add records a newly committed block.
	Add(id int64)
	// Touch records an access to a block.
	Touch(id int64)
	// Remove forgets a block.
	Remove(id int64)
	// Victims yields block ids, the best candidate for eviction first.
	Victims() iter.Seq[int64]
}

// NewEvictor returns the evictor named by worker.eviction.
func NewEvictor(name string) (Evictor, error) {
	switch name {
	case "", "lru":
		return NewLRU(), nil
	default:
		return nil, fmt.Errorf("worker.eviction = %q: want lru", name)
	}
}

// LRU evicts the least recently used block first.
type LRU struct {
	order *list.List // front: most recent
	elems map[int64]*list.Element
}

// NewLRU returns an empty LRU evictor.
func NewLRU() *LRU { return &LRU{order: list.New(), elems: map[int64]*list.Element{}} }

// Add implements Evictor.
func (l *LRU) Add(id int64) { l.Touch(id) }

// Touch implements Evictor.
func (l *LRU) Touch(id int64) {
	if e, ok := l.elems[id]; ok {
		l.order.MoveToFront(e)
		return
	}
	l.elems[id] = l.order.PushFront(id)
}

// Remove implements Evictor.
func (l *LRU) Remove(id int64) {
	if e, ok := l.elems[id]; ok {
		l.order.Remove(e)
		delete(l.elems, id)
	}
}

// Victims implements Evictor: from the least recently used on. The caller
// may Remove the yielded block while iterating.
func (l *LRU) Victims() iter.Seq[int64] {
	return func(yield func(int64) bool) {
		for e := l.order.Back(); e != nil; {
			prev := e.Prev()
			if !yield(e.Value.(int64)) {
				return
			}
			e = prev
		}
	}
}
