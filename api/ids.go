package api

// A block id packs the file's inode id and the block's index in the file, so
// the block ids of a file follow from its id and length without a lookup.
const blockIndexBits = 24

// MaxBlocksPerFile is the most blocks one file may have.
const MaxBlocksPerFile = 1 << blockIndexBits

// BlockID returns the id of block index of file fileID.
func BlockID(fileID int64, index int64) int64 { return fileID<<blockIndexBits | index }

// FileIDOfBlock returns the inode id of the file that owns blockID.
func FileIDOfBlock(blockID int64) int64 { return blockID >> blockIndexBits }

// BlockIndex returns blockID's index within its file.
func BlockIndex(blockID int64) int64 { return blockID & (MaxBlocksPerFile - 1) }
