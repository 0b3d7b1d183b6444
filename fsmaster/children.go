package fsmaster

import (
	"fmt"
	"slices"
	"strings"
)

// chunkMax is the most children one chunk holds: an insert moves at most
// this many pointers (4 KiB), and a lookup is two binary searches.
const chunkMax = 512

// children is a directory's children sorted by name: a list of sorted
// chunks (a two-level B+tree). A directory of a few children is one small
// slice; one of millions costs 8 bytes a child plus the chunks' slack. The
// UFS lists many directories in name order, and children added in order
// fill each chunk before the next is started, so a learned directory's
// chunks are full; inserts elsewhere split a full chunk in two.
type children struct {
	chunks [][]*inode // each sorted and non-empty; chunk i's names all sort before chunk i+1's
	n      int
}

func (c *children) len() int {
	if c == nil {
		return 0
	}
	return c.n
}

// chunkFor returns the index of the chunk where name belongs: the last
// chunk whose first name is <= name (0 when name sorts first).
func (c *children) chunkFor(name string) int {
	i, _ := slices.BinarySearchFunc(c.chunks, name, func(ch []*inode, name string) int {
		return strings.Compare(ch[0].name, name)
	})
	// i is the first chunk whose first name is >= name.
	if i < len(c.chunks) && c.chunks[i][0].name == name {
		return i
	}
	return max(i-1, 0)
}

func searchChunk(ch []*inode, name string) (int, bool) {
	return slices.BinarySearchFunc(ch, name, func(n *inode, name string) int {
		return strings.Compare(n.name, name)
	})
}

// get returns the child named name, or nil.
func (c *children) get(name string) *inode {
	if c.len() == 0 {
		return nil
	}
	ch := c.chunks[c.chunkFor(name)]
	if j, ok := searchChunk(ch, name); ok {
		return ch[j]
	}
	return nil
}

// insert adds n; a child of the same name is replaced.
func (c *children) insert(n *inode) {
	if len(c.chunks) == 0 {
		c.chunks = [][]*inode{insertAt(nil, 0, n)}
		c.n = 1
		return
	}
	// Past the last name (a checkpoint loads children in name order): no
	// search.
	if c.sortsAfterAll(n.name) {
		last := c.chunks[len(c.chunks)-1]
		c.n++
		if len(last) < chunkMax {
			c.chunks[len(c.chunks)-1] = insertAt(last, len(last), n)
		} else {
			c.chunks = append(c.chunks, insertAt(nil, 0, n))
		}
		return
	}
	i := c.chunkFor(n.name)
	ch := c.chunks[i]
	j, found := searchChunk(ch, n.name)
	if found {
		ch[j] = n
		return
	}
	c.n++
	if len(ch) < chunkMax {
		c.chunks[i] = insertAt(ch, j, n)
		return
	}
	if i == len(c.chunks)-1 && j == len(ch) {
		// Appending past the last name (a sorted fill): start a new chunk
		// and leave this one full.
		c.chunks = append(c.chunks, insertAt(nil, 0, n))
		return
	}
	// Split the full chunk in two halves, each with room.
	half := len(ch) / 2
	right := make([]*inode, len(ch)-half, chunkMax)
	copy(right, ch[half:])
	clear(ch[half:])
	left := ch[:half]
	if j <= half {
		left = insertAt(left, j, n)
	} else {
		right = insertAt(right, j-half, n)
	}
	c.chunks[i] = left
	c.chunks = slices.Insert(c.chunks, i+1, right)
}

// insertAt inserts n at j, growing ch by doubling up to exactly chunkMax,
// so a chunk filled in order ends with no slack.
func insertAt(ch []*inode, j int, n *inode) []*inode {
	if len(ch) == cap(ch) {
		grown := make([]*inode, len(ch), min(max(2*cap(ch), 1), chunkMax))
		copy(grown, ch)
		ch = grown
	}
	ch = ch[:len(ch)+1]
	copy(ch[j+1:], ch[j:])
	ch[j] = n
	return ch
}

// sortsAfterAll reports whether name sorts after every child (true when
// there are none).
func (c *children) sortsAfterAll(name string) bool {
	if c.len() == 0 {
		return true
	}
	last := c.chunks[len(c.chunks)-1]
	return last[len(last)-1].name < name
}

// remove deletes the child named name and reports whether there was one.
func (c *children) remove(name string) bool {
	if c.len() == 0 {
		return false
	}
	i := c.chunkFor(name)
	ch := c.chunks[i]
	j, found := searchChunk(ch, name)
	if !found {
		return false
	}
	ch = slices.Delete(ch, j, j+1)
	c.n--
	switch {
	case len(ch) == 0:
		c.chunks = slices.Delete(c.chunks, i, i+1)
		return true
	case cap(ch) > 64 && len(ch) < cap(ch)/4:
		// Give memory back from a chunk that was emptied.
		ch = slices.Clip(slices.Clone(ch))
	}
	c.chunks[i] = ch
	// Merge with the next chunk when both fit in half a chunk, so a
	// directory emptied by deletes does not keep many sparse chunks.
	if i+1 < len(c.chunks) && len(ch)+len(c.chunks[i+1]) <= chunkMax/2 {
		c.chunks[i] = append(ch, c.chunks[i+1]...)
		c.chunks = slices.Delete(c.chunks, i+1, i+2)
	}
	return true
}

// compact repacks the children into full chunks when they fill less than
// three quarters of them: a directory learned out of name order (a UFS
// listing in hash order) splits its chunks to about half full.
func (c *children) compact() {
	if c == nil || len(c.chunks) < 2 || c.n*4 >= len(c.chunks)*chunkMax*3 {
		return
	}
	out := make([][]*inode, 0, (c.n+chunkMax-1)/chunkMax)
	left := c.n
	var cur []*inode
	for _, ch := range c.chunks {
		for _, n := range ch {
			if len(cur) == cap(cur) {
				if cur != nil {
					out = append(out, cur)
				}
				cur = make([]*inode, 0, min(left, chunkMax))
			}
			cur = append(cur, n)
			left--
		}
	}
	c.chunks = append(out, cur)
}

// ascend calls fn for every child from the first whose name is >= from
// (every child when from is empty), in name order, until fn returns false.
// fn must not change c.
func (c *children) ascend(from string, fn func(*inode) bool) {
	if c.len() == 0 {
		return
	}
	i, j := 0, 0
	if from != "" {
		i = c.chunkFor(from)
		j, _ = searchChunk(c.chunks[i], from)
	}
	for ; i < len(c.chunks); i++ {
		for _, n := range c.chunks[i][j:] {
			if !fn(n) {
				return
			}
		}
		j = 0
	}
}

// check reports the first broken invariant of c: chunks non-empty and
// sorted, names strictly increasing across chunks, the count right.
func (c *children) check() error {
	count := 0
	prev := ""
	for i, ch := range c.chunks {
		if len(ch) == 0 {
			return fmt.Errorf("child chunk %d is empty", i)
		}
		for _, n := range ch {
			if count > 0 && n.name <= prev {
				return fmt.Errorf("children out of order or duplicate: %q after %q", n.name, prev)
			}
			prev = n.name
			count++
		}
	}
	if count != c.n {
		return fmt.Errorf("child index counts %d, holds %d", c.n, count)
	}
	if count == 0 {
		return fmt.Errorf("empty child index kept")
	}
	return nil
}
