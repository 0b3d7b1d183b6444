package fsmaster

// idIndex finds an inode by id: an open-addressing hash table of inode
// pointers (the id is read through the pointer), with linear probing and
// backward-shift deletion, so it needs no tombstones. At most 3/4 full, it
// costs 11-16 bytes an inode where a map[int64]*inode costs 20-40.
type idIndex struct {
	slots []*inode // length a power of two, or nil while empty
	n     int
	shift uint8 // 64 - log2(len(slots))
}

const idIndexMin = 64

func (x *idIndex) home(id int64) int {
	// Fibonacci hashing: ids are mostly consecutive, the multiply spreads them.
	return int(uint64(id) * 0x9E3779B97F4A7C15 >> x.shift)
}

func (x *idIndex) len() int { return x.n }

// get returns the inode with id, or nil.
func (x *idIndex) get(id int64) *inode {
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		n := x.slots[i]
		if n == nil {
			return nil
		}
		if n.id == id {
			return n
		}
	}
}

// put adds n, replacing an inode of the same id.
func (x *idIndex) put(n *inode) { x.add(n, true) }

// putNew adds n unless its id is taken, and reports whether it did.
func (x *idIndex) putNew(n *inode) bool { return x.add(n, false) }

func (x *idIndex) add(n *inode, replace bool) bool {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(max(idIndexMin, 2*len(x.slots)))
	}
	mask := len(x.slots) - 1
	for i := x.home(n.id); ; i = (i + 1) & mask {
		m := x.slots[i]
		if m == nil {
			x.slots[i] = n
			x.n++
			return true
		}
		if m.id == n.id {
			if replace {
				x.slots[i] = n
			}
			return false
		}
	}
}

// remove deletes the inode with id and reports whether there was one.
func (x *idIndex) remove(id int64) bool {
	if x.n == 0 {
		return false
	}
	mask := len(x.slots) - 1
	i := x.home(id)
	for {
		n := x.slots[i]
		if n == nil {
			return false
		}
		if n.id == id {
			break
		}
		i = (i + 1) & mask
	}
	// Backward shift: move later members of the probe run into the hole
	// when their home position allows it.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		m := x.slots[j]
		if m == nil {
			break
		}
		h := x.home(m.id)
		// m may move to i when i lies cyclically in [h, j).
		if (j-h)&mask >= (j-i)&mask {
			x.slots[i] = m
			i = j
		}
	}
	x.slots[i] = nil
	x.n--
	if len(x.slots) > idIndexMin && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 2)
	}
	return true
}

// addAll adds ns, none of which may share an id with another or with an
// inode already in x; it stops at the first that does and returns its id
// (ok false). A checkpoint's load adds its millions of files this way:
// sized once, then filled partition by partition in the order of the
// slots, so that each partition's stretch of the table stays in the cache
// while it is filled (one at a time, each insert would miss it).
func (x *idIndex) addAll(ns []*inode) (dup int64, ok bool) {
	size := max(idIndexMin, len(x.slots))
	for (x.n+len(ns))*4 > size*3 {
		size *= 2
	}
	if size != len(x.slots) {
		x.resize(size)
	}
	const partBits = 10
	lg := log2(size)
	if len(ns) < 1<<16 || lg <= partBits {
		for _, n := range ns {
			if !x.putNew(n) {
				return n.id, false
			}
		}
		return 0, true
	}
	part := func(n *inode) int { return x.home(n.id) >> (lg - partBits) }
	var at [1<<partBits + 1]int
	for _, n := range ns {
		at[part(n)+1]++
	}
	for i := 1; i < len(at); i++ {
		at[i] += at[i-1]
	}
	sorted := make([]*inode, len(ns))
	for _, n := range ns {
		p := part(n)
		sorted[at[p]] = n
		at[p]++
	}
	for _, n := range sorted {
		if !x.putNew(n) {
			return n.id, false
		}
	}
	return 0, true
}

func (x *idIndex) resize(size int) {
	old := x.slots
	x.slots = make([]*inode, size)
	x.shift = uint8(64 - log2(size))
	x.n = 0
	mask := size - 1
	for _, n := range old {
		if n == nil {
			continue
		}
		i := x.home(n.id)
		for x.slots[i] != nil {
			i = (i + 1) & mask
		}
		x.slots[i] = n
		x.n++
	}
}

func log2(n int) int {
	k := 0
	for 1<<k < n {
		k++
	}
	return k
}

// each calls fn for every inode, in no order, until fn returns false. fn
// must not change x.
func (x *idIndex) each(fn func(*inode) bool) {
	for _, n := range x.slots {
		if n != nil && !fn(n) {
			return
		}
	}
}
