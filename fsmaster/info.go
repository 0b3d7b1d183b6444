package fsmaster

import (
	"sort"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/strslab"
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
// besides its FileInfos) in shared chunks; a page's strings go together
// once it is sent. A nil *strSlab builds each string on its own.
type strSlab struct{ strslab.Slab }

// join is paths.Join(dir, name), built in the slab.
func (s *strSlab) join(dir, name string) string {
	if s == nil {
		return paths.Join(dir, name)
	}
	return s.End(paths.AppendJoin(s.Start(len(dir)+1+len(name)), dir, name))
}

// joinURI is ufs.JoinURI(root, rel), built in the slab.
func (s *strSlab) joinURI(root, rel string) string {
	if s == nil {
		return ufs.JoinURI(root, rel)
	}
	return s.End(ufs.AppendJoinURI(s.Start(len(root)+1+len(rel)), root, rel))
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
