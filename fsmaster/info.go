package fsmaster

import (
	"sort"
	"strings"
	"unsafe"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/ufs"
)

func sortMounts(ms []*api.MountPointInfo) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].GetAlluviumPath() < ms[j].GetAlluviumPath() })
}

// info builds the FileInfo of n at path p. Call with ns.mu held (either
// mode); it takes the block map's read lock.
func (ns *namespace) info(n *inode, p string, withBlocks bool) *api.FileInfo {
	return ns.fillInfo(&api.FileInfo{}, n, p, withBlocks, nil)
}

// infoSlab hands out a listing's FileInfos a chunk at a time: one
// allocation per chunk, not one per entry.
type infoSlab []api.FileInfo

// strSlab builds a listing page's strings (each entry's path, UFS path and
// fingerprint: three allocations a file, most of what a page allocated
// besides its FileInfos) in shared chunks. Bytes a string covers are
// never written again (a chunk is only appended to, and a full one is
// left for a new one), so the strings stay immutable; a chunk lives as
// long as any of its strings, and a page's strings go together once it is
// sent.
type strSlab struct{ buf []byte }

// strChunk is the size of a strSlab's chunks: some hundreds of paths.
const strChunk = 32 << 10

// reserve makes room for n more bytes in the current chunk (a new one if
// they do not fit) and returns where the next string starts.
func (s *strSlab) reserve(n int) int {
	if cap(s.buf)-len(s.buf) < n {
		s.buf = make([]byte, 0, max(n, strChunk))
	}
	return len(s.buf)
}

// done returns the string appended since from (reserve's answer): the
// bytes must have fit in the reserved room, not moved to a new array.
func (s *strSlab) done(from int) string {
	b := s.buf[from:]
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// join is paths.Join(dir, name) built in the slab.
func (s *strSlab) join(dir, name string) string {
	if s == nil {
		return paths.Join(dir, name)
	}
	from := s.reserve(len(dir) + 1 + len(name))
	if dir != "/" {
		s.buf = append(s.buf, dir...)
	}
	s.buf = append(s.buf, '/')
	s.buf = append(s.buf, name...)
	return s.done(from)
}

// joinURI is ufs.JoinURI(root, rel) built in the slab.
func (s *strSlab) joinURI(root, rel string) string {
	if s == nil {
		return ufs.JoinURI(root, rel)
	}
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return root
	}
	root = strings.TrimRight(root, "/")
	from := s.reserve(len(root) + 1 + len(rel))
	s.buf = append(s.buf, root...)
	s.buf = append(s.buf, '/')
	s.buf = append(s.buf, rel...)
	return s.done(from)
}

// infoChunk is the most FileInfos an infoSlab allocates at once.
const infoChunk = 256

// next returns a zero FileInfo; left is how many more the listing may
// still take (this one included), so a short listing allocates no more.
func (s *infoSlab) next(left int) *api.FileInfo {
	if len(*s) == cap(*s) {
		*s = make([]api.FileInfo, 0, max(1, min(left, infoChunk)))
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}

// fillInfo is info into fi, a zero FileInfo; its strings are built in
// strs (nil: each its own).
func (ns *namespace) fillInfo(fi *api.FileInfo, n *inode, p string, withBlocks bool, strs *strSlab) *api.FileInfo {
	st := ns.st
	fi.FileId, fi.Name, fi.Path = n.id, n.name, p
	fi.CreationTimeMs, fi.LastModificationTimeMs = n.ctime, n.mtime
	fi.Folder, fi.Pinned, fi.PersistenceState = n.dir(), n.pinned(), n.persist()
	fi.Owner, fi.Group, fi.Mode, fi.MountPoint = st.owner(n), st.group(n), n.mode(), n.mountPoint()
	if n.parent != nil {
		fi.ParentId = n.parent.id
	}
	fi.Xattrs = st.xattrsCopy(n)
	if m, rel := st.mountOf(p); m != nil {
		fi.MountId = m.GetMountId()
		if st.isAside(n) {
			// Its bytes go beside the file they will replace, under a
			// temporary name the completion renames onto it.
			rel = asideUFSRel(rel, n.id)
		}
		fi.UfsPath = strs.joinURI(m.GetUfsUri(), rel)
	}
	if n.dir() {
		fi.Completed = true
		fi.ChildCount = int64(n.childCount())
		return fi
	}
	bs := st.blockSize(n)
	fi.Length = n.length
	fi.BlockSizeBytes = bs
	fi.Completed = n.completed()
	fi.Cacheable = true
	fi.ReplicationMin, fi.ReplicationMax = st.replication(n)
	fi.UfsFingerprint = st.fingerprintIn(n, strs)
	fi.Ttl, fi.TtlAction = st.ttl(n)
	fi.WriteType = n.writeType()

	b := ns.blocks
	b.mu.RLock()
	defer b.mu.RUnlock()
	var cached, inMem int64
	// add counts block sp in; blocks come in file order.
	add := func(sp api.BlockSpan) {
		fi.BlockIds = append(fi.BlockIds, sp.ID)
		anyCopy, mem := b.cached(sp.ID)
		if anyCopy {
			cached += sp.Length
		}
		if mem {
			inMem += sp.Length
		}
		if withBlocks {
			fi.FileBlockInfos = append(fi.FileBlockInfos, &api.FileBlockInfo{
				BlockInfo: &api.BlockInfo{BlockId: sp.ID, Length: sp.Length, Locations: b.locations(sp.ID)},
				Offset:    sp.Offset,
			})
		}
	}
	if n.completed() {
		fi.Extents = apiExtents(st.extents(n))
		l := api.NewLayout(n.id, n.length, bs, fi.Extents)
		fi.BlockIds = make([]int64, 0, l.Count())
		for i := range l.Count() {
			add(l.Block(i))
		}
	} else {
		// Blocks written so far, as the workers reported them; offsets as
		// in the usual layout (an upload's blocks have none yet).
		ids := b.fileBlocks(n.id)
		fi.BlockIds = make([]int64, 0, len(ids))
		for _, id := range ids {
			sp := api.BlockSpan{ID: id, Offset: api.BlockIndex(id) * bs}
			if e := b.blocks[id]; e != nil {
				sp.Length = e.length
			}
			add(sp)
		}
	}
	switch {
	case !n.completed():
	case n.length == 0:
		fi.CachedPercent, fi.InMemoryPercent = 100, 100
	default:
		fi.CachedPercent = int32(cached * 100 / n.length)
		fi.InMemoryPercent = int32(inMem * 100 / n.length)
	}
	return fi
}
