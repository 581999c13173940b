package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/tfvars"
)

// awsProblems runs the checks of `haven aws tfvars` on a valid spec and
// returns what the AWS module would refuse, each naming its spec field.
func awsProblems(s spec.Spec) []tfvars.Problem {
	_, _, err := tfvars.GenerateSpec(s)
	var e *tfvars.Error
	if errors.As(err, &e) {
		return e.Problems
	}
	if err != nil {
		return []tfvars.Problem{{Msg: err.Error()}}
	}
	return nil
}

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
		Short: "Check a spec file; exits non-zero naming each invalid field, and warns about what AWS would refuse",
		Long: `Check a spec file; exits non-zero naming each invalid field.

A valid spec is also checked against what the AWS module takes (the checks of
haven aws tfvars): a value the local region accepts but AWS refuses, such as a
name longer than 20 characters, is a warning naming the field and AWS's limit.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := spec.LoadFile(g.specFile)
			var se *spec.Error
			var aws []tfvars.Problem
			if err == nil {
				aws = awsProblems(s)
			}
			if asJSON {
				res := map[string]any{"file": g.specFile, "valid": err == nil}
				if errors.As(err, &se) {
					res["problems"] = se.Problems
				} else if err != nil {
					res["problems"] = []spec.Problem{{Msg: err.Error()}}
				} else {
					res["spec"] = s
					res["deploys_to_aws"] = len(aws) == 0
					if len(aws) > 0 {
						res["aws_problems"] = aws
					}
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
			for _, p := range aws {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: %s: valid locally, but will not deploy to AWS: %s\n", g.specFile, p.Field, p.Msg)
			}
			return nil
		},
	}
	addSpecFlag(cmd, g)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
