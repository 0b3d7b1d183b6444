// Package fileview is the JSON form of a file's status, shared by
// everything that prints one: `alluvium fs stat|ls|location --output json`
// and the FS master's /api/v1/files. DESIGN.md fixes the first fields
// (path, isDir, length, persisted, cachedPercent, blocks[].locations[]);
// the rest may grow.
package fileview

import (
	"fmt"

	"github.com/alluvium/alluvium/api"
)

// File is a file's status as JSON.
type File struct {
	Path             string  `json:"path"`
	IsDir            bool    `json:"isDir"`
	Length           int64   `json:"length"`
	Persisted        bool    `json:"persisted"`
	CachedPercent    int32   `json:"cachedPercent"`
	Blocks           []Block `json:"blocks"`
	Name             string  `json:"name"`
	FileID           int64   `json:"fileId"`
	PersistenceState string  `json:"persistenceState"`
	Completed        bool    `json:"completed"`
	InMemoryPercent  int32   `json:"inMemoryPercent"`
	BlockSizeBytes   int64   `json:"blockSizeBytes"`
	Mode             string  `json:"mode"`
	Owner            string  `json:"owner"`
	Group            string  `json:"group"`
	Pinned           bool    `json:"pinned"`
	MountPoint       bool    `json:"mountPoint"`
	UfsPath          string  `json:"ufsPath"`
	CreationTimeMs   int64   `json:"creationTimeMs"`
	ModificationMs   int64   `json:"lastModificationTimeMs"`
	ChildCount       int64   `json:"childCount,omitempty"`
}

// Block is one block of a File.
type Block struct {
	ID        int64      `json:"id"`
	Offset    int64      `json:"offset"`
	Length    int64      `json:"length"`
	Locations []Location `json:"locations"`
}

// Location is one cached copy of a block.
type Location struct {
	WorkerID int64  `json:"workerId"`
	Host     string `json:"host"`
	RPCPort  int32  `json:"rpcPort"`
	Tier     string `json:"tier"`
}

// FromInfo converts a FileInfo. Blocks come from file_block_infos when the
// call asked for them, else from the block ids (without locations).
func FromInfo(fi *api.FileInfo) File {
	j := File{
		Path: fi.GetPath(), IsDir: fi.GetFolder(), Length: fi.GetLength(),
		Persisted: fi.GetPersistenceState() == api.PersistenceState_PERSISTED, CachedPercent: fi.GetCachedPercent(),
		Blocks: []Block{}, Name: fi.GetName(), FileID: fi.GetFileId(),
		PersistenceState: fi.GetPersistenceState().String(), Completed: fi.GetCompleted(),
		InMemoryPercent: fi.GetInMemoryPercent(), BlockSizeBytes: fi.GetBlockSizeBytes(),
		Mode: fmt.Sprintf("%04o", fi.GetMode()), Owner: fi.GetOwner(), Group: fi.GetGroup(),
		Pinned: fi.GetPinned(), MountPoint: fi.GetMountPoint(), UfsPath: fi.GetUfsPath(),
		CreationTimeMs: fi.GetCreationTimeMs(), ModificationMs: fi.GetLastModificationTimeMs(),
		ChildCount: fi.GetChildCount(),
	}
	if len(fi.GetFileBlockInfos()) > 0 {
		for _, b := range fi.GetFileBlockInfos() {
			bj := Block{ID: b.GetBlockInfo().GetBlockId(), Offset: b.GetOffset(), Length: b.GetBlockInfo().GetLength(), Locations: []Location{}}
			for _, l := range b.GetBlockInfo().GetLocations() {
				bj.Locations = append(bj.Locations, Location{WorkerID: l.GetWorkerId(), Host: l.GetAddress().GetHost(), RPCPort: l.GetAddress().GetRpcPort(), Tier: l.GetTier()})
			}
			j.Blocks = append(j.Blocks, bj)
		}
		return j
	}
	if !fi.GetCompleted() {
		// Blocks written so far (lengths not final).
		for _, id := range fi.GetBlockIds() {
			j.Blocks = append(j.Blocks, Block{ID: id, Offset: api.BlockIndex(id) * fi.GetBlockSizeBytes(), Locations: []Location{}})
		}
		return j
	}
	l := api.LayoutOf(fi)
	for i := range l.Count() {
		b := l.Block(i)
		j.Blocks = append(j.Blocks, Block{ID: b.ID, Offset: b.Offset, Length: b.Length, Locations: []Location{}})
	}
	return j
}
