package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
)

// zoneFaults maps --fault values onto the failpoint catalogue's scenarios.
var zoneFaults = map[string]string{
	"power": failpoint.ZonePower, "partition": failpoint.ZonePartition, "degrade": failpoint.ZoneDegrade,
}

func newZoneCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "zone", Short: "Fail a whole zone (power, partition, degrade) and restore it"}
	var fault string
	var loss int
	fail := &cobra.Command{
		Use:   "fail ZONE",
		Short: "Fail a zone: power (SIGKILL everything in it, launch nothing there), partition (its links drop every packet) or degrade (random loss)",
		Long: `Fail a zone until ` + "`haven zone restore`" + `. ZONE is a zone name, or "primary" for the zone of
the database primary.

  power      every process of the zone (its instances, its database node) is SIGKILLed,
             nothing starts there again, and the fleet launches into the other zones
  partition  every packet on the zone's links is dropped: connections hang, none is
             refused; the fleet launches into the other zones meanwhile (needs the VPC)
  degrade    each packet on the zone's links is dropped with probability --loss (nftables
             numgen). Loss only: this kernel has no netem, so no latency (needs the VPC)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, ok := zoneFaults[fault]
			if !ok {
				return fmt.Errorf("--fault %q: must be one of %s", fault, strings.Join(keys(zoneFaults), ", "))
			}
			if fault == "degrade" && (loss < 1 || loss > 99) {
				return fmt.Errorf("--loss %d: must be 1-99 (100 is a partition)", loss)
			}
			res, err := g.client().Fault(cmd.Context(), api.FaultRequest{Scenario: sc, Target: args[0], LossPercent: loss})
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("zone %s: %s at %s", res.Zone, fault, res.At.Format("15:04:05.000"))
			if len(res.Killed) > 0 {
				msg += fmt.Sprintf("; SIGKILLed %s", strings.Join(res.Killed, ", "))
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg+"; `haven zone restore "+res.Zone+"` ends it")
			return nil
		},
	}
	fail.Flags().StringVar(&fault, "fault", "power", "power, partition or degrade")
	fail.Flags().IntVar(&loss, "loss", 10, "degrade: the chance (1-99 %) that a packet is dropped")
	restore := &cobra.Command{
		Use:   "restore ZONE",
		Short: "End a zone's fault: its power or network returns; the database node rejoins as a standby, the fleet rebalances",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := g.client().Fault(cmd.Context(), api.FaultRequest{Scenario: failpoint.ZoneRestore, Target: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "zone %s restored at %s\n", res.Zone, res.At.Format("15:04:05.000"))
			return nil
		},
	}
	cmd.AddCommand(fail, restore)
	return cmd
}
