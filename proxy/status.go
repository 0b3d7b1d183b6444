package proxy

import (
	"strings"

	"github.com/alluvium/alluvium/api"
)

// fileStatus is a file's status with the field names of Alluxio's
// URIStatus JSON, which existing REST clients decode.
type fileStatus struct {
	BlockIDs               []int64         `json:"blockIds"`
	BlockSizeBytes         int64           `json:"blockSizeBytes"`
	Cacheable              bool            `json:"cacheable"`
	Completed              bool            `json:"completed"`
	CreationTimeMs         int64           `json:"creationTimeMs"`
	FileBlockInfos         []fileBlockInfo `json:"fileBlockInfos"`
	FileID                 int64           `json:"fileId"`
	Folder                 bool            `json:"folder"`
	Owner                  string          `json:"owner"`
	Group                  string          `json:"group"`
	InMemoryPercentage     int32           `json:"inMemoryPercentage"`
	InAlluxioPercentage    int32           `json:"inAlluxioPercentage"`
	LastModificationTimeMs int64           `json:"lastModificationTimeMs"`
	LastAccessTimeMs       int64           `json:"lastAccessTimeMs"`
	Length                 int64           `json:"length"`
	Name                   string          `json:"name"`
	Path                   string          `json:"path"`
	UfsPath                string          `json:"ufsPath"`
	Pinned                 bool            `json:"pinned"`
	Persisted              bool            `json:"persisted"`
	PersistenceState       string          `json:"persistenceState"`
	Mode                   uint32          `json:"mode"`
	MountPoint             bool            `json:"mountPoint"`
	MountID                int64           `json:"mountId"`
	TTL                    int64           `json:"ttl"`
	TTLAction              string          `json:"ttlAction"`
	ReplicationMin         int32           `json:"replicationMin"`
	ReplicationMax         int32           `json:"replicationMax"`
	UfsFingerprint         string          `json:"ufsFingerprint"`
}

type fileBlockInfo struct {
	BlockInfo    blockInfo `json:"blockInfo"`
	Offset       int64     `json:"offset"`
	UfsLocations []string  `json:"ufsLocations"`
}

type blockInfo struct {
	BlockID   int64           `json:"blockId"`
	Length    int64           `json:"length"`
	Locations []blockLocation `json:"locations"`
}

type blockLocation struct {
	WorkerID      int64         `json:"workerId"`
	WorkerAddress workerAddress `json:"workerAddress"`
	TierAlias     string        `json:"tierAlias"`
}

type workerAddress struct {
	Host     string `json:"host"`
	RPCPort  int32  `json:"rpcPort"`
	DataPort int32  `json:"dataPort"`
	WebPort  int32  `json:"webPort"`
}

// noTTL is Alluxio's "no TTL".
const noTTL = -1

func toStatus(i *api.FileInfo) fileStatus {
	s := fileStatus{
		BlockIDs:               append([]int64{}, i.GetBlockIds()...),
		BlockSizeBytes:         i.GetBlockSizeBytes(),
		Cacheable:              i.GetCacheable(),
		Completed:              i.GetCompleted(),
		CreationTimeMs:         i.GetCreationTimeMs(),
		FileBlockInfos:         []fileBlockInfo{},
		FileID:                 i.GetFileId(),
		Folder:                 i.GetFolder(),
		Owner:                  i.GetOwner(),
		Group:                  i.GetGroup(),
		InMemoryPercentage:     i.GetInMemoryPercent(),
		InAlluxioPercentage:    i.GetCachedPercent(),
		LastModificationTimeMs: i.GetLastModificationTimeMs(),
		LastAccessTimeMs:       i.GetLastModificationTimeMs(),
		Length:                 i.GetLength(),
		Name:                   i.GetName(),
		Path:                   i.GetPath(),
		UfsPath:                i.GetUfsPath(),
		Pinned:                 i.GetPinned(),
		Persisted:              i.GetPersistenceState() == api.PersistenceState_PERSISTED,
		PersistenceState:       persistenceState(i.GetPersistenceState()),
		Mode:                   i.GetMode(),
		MountPoint:             i.GetMountPoint(),
		MountID:                i.GetMountId(),
		TTL:                    i.GetTtl(),
		TTLAction:              i.GetTtlAction(),
		ReplicationMin:         i.GetReplicationMin(),
		ReplicationMax:         i.GetReplicationMax(),
		UfsFingerprint:         i.GetUfsFingerprint(),
	}
	if s.TTL == 0 {
		s.TTL = noTTL
	}
	if s.TTLAction == "" {
		s.TTLAction = "DELETE"
	}
	for _, fb := range i.GetFileBlockInfos() {
		bi := fb.GetBlockInfo()
		out := fileBlockInfo{
			BlockInfo:    blockInfo{BlockID: bi.GetBlockId(), Length: bi.GetLength(), Locations: []blockLocation{}},
			Offset:       fb.GetOffset(),
			UfsLocations: append([]string{}, fb.GetUfsLocations()...),
		}
		for _, l := range bi.GetLocations() {
			a := l.GetAddress()
			out.BlockInfo.Locations = append(out.BlockInfo.Locations, blockLocation{
				WorkerID:      l.GetWorkerId(),
				WorkerAddress: workerAddress{Host: a.GetHost(), RPCPort: a.GetRpcPort(), DataPort: a.GetDataPort(), WebPort: a.GetWebPort()},
				TierAlias:     l.GetTier(),
			})
		}
		s.FileBlockInfos = append(s.FileBlockInfos, out)
	}
	return s
}

func persistenceState(p api.PersistenceState) string {
	if p == api.PersistenceState_PERSISTENCE_STATE_UNSPECIFIED {
		return "NOT_PERSISTED"
	}
	return strings.TrimPrefix(p.String(), "PERSISTENCE_STATE_")
}
