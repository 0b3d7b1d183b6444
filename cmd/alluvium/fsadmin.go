package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/sdk"
)

func newFSAdminCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "fsadmin",
		Short: "Administer the FS masters: report, checkpoint, journal (quorum, convert)",
	}
	c.AddCommand(newFSAdminReportCmd(g), newFSAdminCheckpointCmd(g), newFSAdminJournalCmd(g))
	return c
}

// reportJSON is `fsadmin report --output json`.
type reportJSON struct {
	Version                string       `json:"version"`
	RPCAddress             string       `json:"rpcAddress"`
	StartTimeMs            int64        `json:"startTimeMs"`
	JournalSequence        int64        `json:"journalSequence"`
	JournalSegments        int32        `json:"journalSegments"`
	LastCheckpointSequence int64        `json:"lastCheckpointSequence"`
	LastCheckpointTimeMs   int64        `json:"lastCheckpointTimeMs"`
	Inodes                 int64        `json:"inodes"`
	UfsRoot                string       `json:"ufsRoot"`
	LiveWorkers            int32        `json:"liveWorkers"`
	LostWorkers            int32        `json:"lostWorkers"`
	Capacity               []tierJSON   `json:"capacity"`
	Workers                []workerJSON `json:"workers"`
	Mounts                 []mountJSON  `json:"mounts"`
	// JournalType is local or embedded; Masters lists every FS master
	// with its role, applied index and lag (one with a local journal).
	JournalType string       `json:"journalType"`
	Masters     []sdk.Master `json:"masters"`
}

type tierJSON struct {
	Alias         string `json:"alias"`
	CapacityBytes int64  `json:"capacityBytes"`
	UsedBytes     int64  `json:"usedBytes"`
}

type workerJSON struct {
	ID              int64      `json:"id"`
	Address         string     `json:"address"`
	State           string     `json:"state"`
	Blocks          int64      `json:"blocks"`
	LastHeartbeatMs int64      `json:"lastHeartbeatMs"`
	Tiers           []tierJSON `json:"tiers"`
}

type mountJSON struct {
	Path     string `json:"path"`
	UfsURI   string `json:"ufsUri"`
	ReadOnly bool   `json:"readOnly"`
	MountID  int64  `json:"mountId"`
}

func tiersJSON(ts []*api.TierUsage) []tierJSON {
	out := []tierJSON{}
	for _, t := range ts {
		out = append(out, tierJSON{Alias: t.GetAlias(), CapacityBytes: t.GetCapacityBytes(), UsedBytes: t.GetUsedBytes()})
	}
	return out
}

func tiersText(ts []*api.TierUsage) string {
	s := ""
	for i, t := range ts {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s/%s", t.GetAlias(), humanize.Bytes(t.GetUsedBytes()), humanize.Bytes(t.GetCapacityBytes()))
	}
	if s == "" {
		return "-"
	}
	return s
}

func msTime(ms int64) string {
	if ms <= 0 {
		return "never"
	}
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05")
}

func newFSAdminReportCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "report",
		Short: "Show the FS masters (role, applied index, lag), the journal, checkpoint, capacity and workers",
		Example: `  alluvium fsadmin report
  alluvium fsadmin report --output json | jq .journalSequence`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			info, err := c.MasterInfo(ctx)
			if err != nil {
				return cliErr(err)
			}
			grp, err := c.MasterGroup(ctx)
			if err != nil {
				return cliErr(err)
			}
			workers, err := c.Workers(ctx)
			if err != nil {
				return cliErr(err)
			}
			mounts, err := c.Mounts(ctx)
			if err != nil {
				return cliErr(err)
			}
			if output == "json" {
				r := reportJSON{
					Version: info.GetVersion(), RPCAddress: info.GetRpcAddress(), StartTimeMs: info.GetStartTimeMs(),
					JournalSequence: info.GetJournalSequence(), JournalSegments: info.GetJournalSegments(),
					LastCheckpointSequence: info.GetLastCheckpointSequence(), LastCheckpointTimeMs: info.GetLastCheckpointTimeMs(),
					Inodes: info.GetInodeCount(), UfsRoot: info.GetUfsRoot(), LiveWorkers: info.GetLiveWorkers(),
					LostWorkers: info.GetLostWorkers(), Capacity: tiersJSON(info.GetCapacity()), Workers: []workerJSON{}, Mounts: []mountJSON{},
					JournalType: info.GetJournalType(), Masters: grp.Masters,
				}
				for _, w := range workers {
					r.Workers = append(r.Workers, workerJSON{
						ID: w.GetId(), Address: fmt.Sprintf("%s:%d", w.GetAddress().GetHost(), w.GetAddress().GetRpcPort()),
						State: w.GetState().String(), Blocks: w.GetBlockCount(), LastHeartbeatMs: w.GetLastHeartbeatMs(), Tiers: tiersJSON(w.GetTiers()),
					})
				}
				for _, m := range mounts {
					r.Mounts = append(r.Mounts, mountJSON{Path: m.GetAlluviumPath(), UfsURI: m.GetUfsUri(), ReadOnly: m.GetReadOnly(), MountID: m.GetMountId()})
				}
				return writeJSON(cmd.OutOrStdout(), r)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "FS master\t%s (version %s), up since %s\n", info.GetRpcAddress(), info.GetVersion(), msTime(info.GetStartTimeMs()))
			if info.GetJournalType() == "embedded" {
				fmt.Fprintf(w, "Journal\tembedded (raft), sequence %d\n", info.GetJournalSequence())
			} else {
				fmt.Fprintf(w, "Journal\tsequence %d in %d segment(s)\n", info.GetJournalSequence(), info.GetJournalSegments())
			}
			fmt.Fprintf(w, "Last checkpoint\tsequence %d at %s\n", info.GetLastCheckpointSequence(), msTime(info.GetLastCheckpointTimeMs()))
			fmt.Fprintf(w, "Inodes\t%d\n", info.GetInodeCount())
			fmt.Fprintf(w, "Root UFS\t%s\n", info.GetUfsRoot())
			fmt.Fprintf(w, "Workers\t%d live, %d lost\n", info.GetLiveWorkers(), info.GetLostWorkers())
			fmt.Fprintf(w, "Capacity\t%s\n", tiersText(info.GetCapacity()))
			w.Flush()
			if info.GetJournalType() == "embedded" {
				fmt.Printf("\nFS masters (embedded journal, term %d, commit index %d):\n", grp.Term, grp.CommitIndex)
				w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "  ID\tRPC\tROLE\tAPPLIED\tLAG\tSEQUENCE")
				for _, m := range grp.Masters {
					if m.Info == nil {
						fmt.Fprintf(w, "  %s\t%s\t%s\t-\t-\t-\t(%s)\n", m.ID, m.RPCAddress, m.Role, m.Error)
						continue
					}
					fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%d\t%d\n", m.ID, m.RPCAddress, m.Role, m.AppliedIndex, m.Lag, m.Sequence)
				}
				w.Flush()
			}
			if len(mounts) > 0 {
				fmt.Println("\nMounts:")
				for _, m := range mounts {
					ro := ""
					if m.GetReadOnly() {
						ro = " (read-only)"
					}
					fmt.Printf("  %s -> %s%s\n", m.GetAlluviumPath(), m.GetUfsUri(), ro)
				}
			}
			if len(workers) > 0 {
				fmt.Println("\nWorkers:")
				w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "  ID\tADDRESS\tSTATE\tBLOCKS\tLAST HEARTBEAT\tTIERS (used/capacity)")
				for _, wk := range workers {
					fmt.Fprintf(w, "  %d\t%s:%d\t%s\t%d\t%s\t%s\n", wk.GetId(), wk.GetAddress().GetHost(), wk.GetAddress().GetRpcPort(),
						wk.GetState(), wk.GetBlockCount(), msTime(wk.GetLastHeartbeatMs()), tiersText(wk.GetTiers()))
				}
				w.Flush()
			}
			return nil
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json (default: text)")
	return c
}

func newFSAdminCheckpointCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Write a journal checkpoint now (by the secondary if one runs, else the master)",
		Long: `Ask the FS master for a checkpoint covering every change made so far. The
master closes its current journal segment; a running secondary writes the
checkpoint, otherwise the master writes it from its own state (holding off
changes meanwhile). Segments the checkpoint covers are deleted.`,
		Example: `  alluvium fsadmin checkpoint`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return cliErr(err)
			}
			fmt.Printf("checkpoint at sequence %d: %s\n", resp.GetSequence(), resp.GetPath())
			return nil
		},
	}
}

func checkOutput(o string) error {
	if o != "" && o != "json" && o != "text" {
		return usagef("--output %q: want json or text", o)
	}
	return nil
}
