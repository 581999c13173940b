package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/drill"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Prove a promise under load: lose an instance, fail the database over, ..."}
	cmd.AddCommand(newInstanceLossCmd(g), newDBFailoverDrillCmd(g), newPITRDrillCmd(g), newSecretRotationCmd(g))
	return cmd
}

func newInstanceLossCmd(g *globals) *cobra.Command {
	var cfg drill.InstanceLossConfig
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "instance-loss",
		Short: "Kill one instance and freeze another under logged-in load; report failed requests and recovery times",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var progress io.Writer = cmd.ErrOrStderr()
			cfg.Progress = progress
			rep, err := drill.InstanceLoss(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printInstanceLoss(cmd.OutOrStdout(), rep)
			}
			if !rep.Pass {
				return errorf(2, "drill instance-loss failed: %v", rep.Reasons)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to drive load")
	cmd.Flags().IntVar(&cfg.Rate, "rate", 50, "requests per second")
	cmd.Flags().IntVar(&cfg.Users, "users", 20, "seeded students to log in")
	cmd.Flags().StringVar(&cfg.Password, "password", "exam-week-2026", "the seeded users' demo password (courses seed --password)")
	cmd.Flags().DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", 90*time.Second, "how long to wait for a replacement")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printInstanceLoss(w io.Writer, r *drill.InstanceLossReport) {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "instance-loss drill: %s\n", verdict)
	fmt.Fprintf(w, "  requests %d, failed %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms over %.0f s at %d/s\n",
		r.Requests, r.Failed, r.P50MS, r.P99MS, r.MaxMS, r.DurationS, r.Rate)
	for _, f := range r.Faults {
		fmt.Fprintf(w, "  %-6s %s (zone %s) at %.1fs: out of service after %.0f ms (bound %.0f ms), replaced by %s after %.0f ms\n",
			f.Kind, f.Instance, f.Zone, float64(f.AtMS)/1000, f.DetectMS, f.DetectBoundMS, f.Replacement, f.ReplaceMS)
	}
	fmt.Fprintf(w, "  fleet after: %d in service, %d healthy, desired %d\n", r.InService, r.HealthyEnd, r.Desired)
	for _, reason := range r.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", reason)
	}
	for e, n := range r.Errors {
		fmt.Fprintf(os.Stderr, "  error x%d: %s\n", n, e)
	}
}
