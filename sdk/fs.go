package sdk

import (
	"context"
	"iter"

	"github.com/alluvium/alluvium/api"
)

// FileInfo is the status of a file or directory.
type FileInfo = api.FileInfo

// Stat returns the status of path, loading it from the UFS on first sight.
func (c *Client) Stat(ctx context.Context, path string) (*FileInfo, error) {
	return c.stat(ctx, "stat", path, 0)
}

// stat is Stat that also checks access bits on the inode (Open: read).
func (c *Client) stat(ctx context.Context, op, path string, access uint32) (*FileInfo, error) {
	return c.stats.do(ctx, op, path, &api.GetStatusRequest{Path: path, Access: access})
}

// ListOptions tune List.
type ListOptions struct {
	Recursive bool
	// PageSize is the entries per call; 0: the server's default, or
	// RecursivePageSize for a whole subtree without blocks.
	PageSize      int32
	IncludeBlocks bool // fill FileBlockInfos
	// Sync has the master sync each listed directory with its UFS first:
	// files added, changed or deleted there behind Alluvium's back show.
	Sync bool
	// XAttrs names the extended attributes each entry carries (none when
	// empty; Stat returns them all).
	XAttrs []string
}

// RecursivePageSize is a recursive List's page unless ListOptions says
// otherwise: a tree in big pages costs fewer calls, and a master learning a
// UFS tree waits for its journal once a page (the master cuts a page to
// fsmaster.list.max-page-size).
const RecursivePageSize = 5000

// List streams the children of path (its whole subtree when Recursive),
// fetching pages as the loop advances: the next page is asked for while
// the loop works through the current one, so a long listing costs the
// slower of the two, not their sum.
//
//	for info, err := range c.List(ctx, "/data", sdk.ListOptions{}) {
//		if err != nil { return err }
//		fmt.Println(info.Path)
//	}
func (c *Client) List(ctx context.Context, path string, o ListOptions) iter.Seq2[*FileInfo, error] {
	return func(yield func(*FileInfo, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type page struct {
			resp *api.ListStatusResponse
			err  error
		}
		size := o.PageSize
		if size == 0 && o.Recursive && !o.IncludeBlocks {
			size = RecursivePageSize
		}
		fetch := func(token string) <-chan page {
			ch := make(chan page, 1)
			go func() {
				var resp *api.ListStatusResponse
				req := &api.ListStatusRequest{
					Path: path, Recursive: o.Recursive, PageSize: size,
					PageToken: token, IncludeBlocks: o.IncludeBlocks, Xattrs: o.XAttrs,
				}
				if o.Sync {
					req.LoadMetadataType = api.LoadMetadataType_ALWAYS
				}
				err := c.call(ctx, "ls", path, true, func(ctx context.Context) (err error) {
					resp, err = c.fs.ListStatus(ctx, req)
					return err
				})
				ch <- page{resp, err}
			}()
			return ch
		}
		next := fetch("")
		for {
			p := <-next
			if p.err != nil {
				yield(nil, p.err)
				return
			}
			next = nil
			if t := p.resp.NextPageToken; t != "" {
				next = fetch(t) // while this page is worked through
			}
			for _, info := range p.resp.Infos {
				if !yield(info, nil) {
					return // cancel stops the fetch under way
				}
			}
			if next == nil {
				return
			}
		}
	}
}

// MkdirOptions tune Mkdir.
type MkdirOptions struct {
	Parents     bool // create missing parents; an existing directory is fine (mkdir -p)
	AllowExists bool
	Mode        uint32
	WriteType   api.WriteType
	// Owner and Group of the directory made (a superuser's call only; ""
	// the caller).
	Owner, Group string
	// XAttrs are the extended attributes of the directory made.
	XAttrs map[string][]byte
}

// Mkdir creates a directory.
func (c *Client) Mkdir(ctx context.Context, path string, o MkdirOptions) (*FileInfo, error) {
	var resp *api.CreateDirectoryResponse
	err := c.call(ctx, "mkdir", path, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{
			Path: path, Recursive: o.Parents, AllowExists: o.AllowExists || o.Parents,
			Mode: o.Mode, WriteType: o.WriteType, Owner: o.Owner, Group: o.Group, Xattrs: o.XAttrs,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Info, nil
}

// DeleteOptions tune Delete.
type DeleteOptions struct {
	Recursive    bool
	AlluviumOnly bool // leave the UFS untouched
	// UnlessWriting leaves a directory in which files are being written
	// (ErrFailedPrecondition).
	UnlessWriting bool
	// FileID deletes only that file: the path's file must have this id, or
	// it is an overwrite of the path still being written (which is then
	// dropped, leaving the path's file as it was).
	FileID int64
}

// Delete removes a file or directory.
func (c *Client) Delete(ctx context.Context, path string, o DeleteOptions) error {
	return c.call(ctx, "rm", path, false, func(ctx context.Context) error {
		_, err := c.fs.Delete(ctx, &api.DeleteRequest{Path: path, Recursive: o.Recursive, AlluviumOnly: o.AlluviumOnly, FileId: o.FileID, UnlessWriting: o.UnlessWriting})
		return err
	})
}

// Rename moves src to dst atomically.
func (c *Client) Rename(ctx context.Context, src, dst string) (*FileInfo, error) {
	var resp *api.RenameResponse
	err := c.call(ctx, "mv", src, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.Rename(ctx, &api.RenameRequest{Src: src, Dst: dst})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Info, nil
}

// SetAttribute changes the attributes set in req (mode, owner, pinned, ...).
func (c *Client) SetAttribute(ctx context.Context, req *api.SetAttributeRequest) (*FileInfo, error) {
	var resp *api.SetAttributeResponse
	err := c.call(ctx, "setattr", req.GetPath(), true, func(ctx context.Context) (err error) {
		resp, err = c.fs.SetAttribute(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Info, nil
}

// CheckAccess returns nil when the caller may access path as bits asks
// (4 read, 2 write, 1 execute; every ancestor needs execute), else an
// error (ErrPermissionDenied names what was refused; ErrNotFound).
func (c *Client) CheckAccess(ctx context.Context, path string, bits uint32) error {
	return c.call(ctx, "access", path, true, func(ctx context.Context) error {
		_, err := c.fs.CheckAccess(ctx, &api.CheckAccessRequest{Path: path, Bits: bits})
		return err
	})
}

// MountOptions tune Mount.
type MountOptions struct {
	Options  map[string]string // e.g. s3 endpoint and credentials
	ReadOnly bool
	Shared   bool
}

// Mount attaches the UFS at uri to path.
func (c *Client) Mount(ctx context.Context, path, uri string, o MountOptions) (*api.MountPointInfo, error) {
	var resp *api.MountResponse
	err := c.call(ctx, "mount", path, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.Mount(ctx, &api.MountRequest{AlluviumPath: path, UfsUri: uri, Options: o.Options, ReadOnly: o.ReadOnly, Shared: o.Shared})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Mount, nil
}

// Unmount detaches the mount at path (its files leave the namespace; the UFS
// keeps them).
func (c *Client) Unmount(ctx context.Context, path string) error {
	return c.call(ctx, "unmount", path, false, func(ctx context.Context) error {
		_, err := c.fs.Unmount(ctx, &api.UnmountRequest{AlluviumPath: path})
		return err
	})
}

// Mounts returns the mount table.
func (c *Client) Mounts(ctx context.Context) ([]*api.MountPointInfo, error) {
	var resp *api.GetMountTableResponse
	err := c.call(ctx, "mounts", "", true, func(ctx context.Context) (err error) {
		resp, err = c.fs.GetMountTable(ctx, &api.GetMountTableRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Mounts, nil
}

// FreeOptions tune Free.
type FreeOptions struct {
	Recursive bool
	Force     bool // free unpersisted and pinned files too
}

// Free drops the cached copies of the blocks under path; the UFS keeps the
// bytes. It returns how many blocks were freed.
func (c *Client) Free(ctx context.Context, path string, o FreeOptions) (int64, error) {
	var resp *api.FreeResponse
	err := c.call(ctx, "free", path, true, func(ctx context.Context) (err error) {
		resp, err = c.fs.Free(ctx, &api.FreeRequest{Path: path, Recursive: o.Recursive, Force: o.Force})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.BlocksFreed, nil
}

// MasterInfo reports the FS master's state: journal, checkpoint, capacity.
func (c *Client) MasterInfo(ctx context.Context) (*api.GetMasterInfoResponse, error) {
	var resp *api.GetMasterInfoResponse
	err := c.call(ctx, "report", "", true, func(ctx context.Context) (err error) {
		resp, err = c.fs.GetMasterInfo(ctx, &api.GetMasterInfoRequest{})
		return err
	})
	return resp, err
}

// Masters says which FS master leads and lists the group (a single
// master answers with itself).
func (c *Client) Masters(ctx context.Context) (*api.GetLeaderResponse, error) {
	var resp *api.GetLeaderResponse
	err := c.call(ctx, "masters", "", true, func(ctx context.Context) (err error) {
		resp, err = c.fs.GetLeader(ctx, &api.GetLeaderRequest{})
		return err
	})
	return resp, err
}

// Checkpoint asks for a journal checkpoint now and returns its sequence.
func (c *Client) Checkpoint(ctx context.Context) (*api.CheckpointResponse, error) {
	var resp *api.CheckpointResponse
	err := c.call(ctx, "checkpoint", "", false, func(ctx context.Context) (err error) {
		resp, err = c.fs.Checkpoint(ctx, &api.CheckpointRequest{})
		return err
	})
	return resp, err
}

// Workers lists the block workers the FS master knows.
func (c *Client) Workers(ctx context.Context) ([]*api.WorkerInfo, error) {
	var resp *api.GetWorkerInfoListResponse
	err := c.call(ctx, "workers", "", true, func(ctx context.Context) (err error) {
		resp, err = c.blocks.GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Workers, nil
}
