package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/spec"
)

func newInitCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a starter haven.yaml describing the reference architecture with the sample app",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("write %s: the file exists; pass --force to overwrite it", out)
			}
			if err := os.WriteFile(out, spec.Starter, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; check it with `haven validate -f %s`, then `haven up -f %s`\n", out, out, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "file", "f", "haven.yaml", "where to write the spec")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

func newValidateCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a spec file; exits non-zero naming each invalid field",
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := spec.LoadFile(g.specFile)
			var se *spec.Error
			if asJSON {
				res := map[string]any{"file": g.specFile, "valid": err == nil}
				if errors.As(err, &se) {
					res["problems"] = se.Problems
				} else if err != nil {
					res["problems"] = []spec.Problem{{Msg: err.Error()}}
				} else {
					res["spec"] = s
				}
				_ = writeJSON(cmd.OutOrStdout(), res)
				if err != nil {
					return errorf(1, "")
				}
				return nil
			}
			if err != nil {
				if errors.As(err, &se) {
					return errorf(1, "invalid spec:\n%v", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: region %q, fleet %d–%d (desired %d) over zones %v, database multi_az=%v\n",
				g.specFile, s.Name, s.Fleet.Min, s.Fleet.Max, s.Fleet.Desired, s.Zones, s.Database.MultiAZ)
			return nil
		},
	}
	addSpecFlag(cmd, g)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
