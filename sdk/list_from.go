package sdk

import (
	"context"
	"iter"

	"github.com/alluvium/alluvium/api"
)

// StatWith is Stat with a metadata-sync choice: ALWAYS re-checks the UFS,
// NEVER looks at the namespace only (UNSPECIFIED is ONCE).
func (c *Client) StatWith(ctx context.Context, path string, lt api.LoadMetadataType) (*FileInfo, error) {
	return c.stats.do(ctx, "stat", path, &api.GetStatusRequest{Path: path, LoadMetadataType: lt})
}

// ListFromOptions tune ListFrom.
type ListFromOptions struct {
	// After lists only the children whose names sort after it (byte-wise);
	// "" lists from the first. Any string will do, names or not: an S3
	// gateway seeks to a key this way.
	After            string
	PageSize         int32 // 0: server default
	IncludeBlocks    bool
	LoadMetadataType api.LoadMetadataType
	// XAttrs names the extended attributes each entry carries (none when
	// empty).
	XAttrs []string
}

// ListFrom streams the children of directory path in name order, starting
// after o.After, without listing the names before it. (A file lists as
// itself when o.After is "".)
func (c *Client) ListFrom(ctx context.Context, path string, o ListFromOptions) iter.Seq2[*FileInfo, error] {
	return func(yield func(*FileInfo, error) bool) {
		list := func(token string, size int32) (*api.ListStatusResponse, error) {
			var resp *api.ListStatusResponse
			err := c.call(ctx, "ls", path, true, func(ctx context.Context) (err error) {
				resp, err = c.fs.ListStatus(ctx, &api.ListStatusRequest{
					Path: path, PageSize: size, PageToken: token,
					IncludeBlocks: o.IncludeBlocks, LoadMetadataType: o.LoadMetadataType, Xattrs: o.XAttrs,
				})
				return err
			})
			return resp, err
		}
		// The FS master's page token is the last name returned: it seeks
		// to the first name after it. It merges a directory's UFS listing
		// only on a first page, so a seek starts with one (of one entry).
		token := o.After
		if token != "" {
			if _, err := list("", 1); err != nil {
				yield(nil, err)
				return
			}
		}
		for {
			resp, err := list(token, o.PageSize)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, info := range resp.Infos {
				if !yield(info, nil) {
					return
				}
			}
			if resp.NextPageToken == "" {
				return
			}
			token = resp.NextPageToken
		}
	}
}
