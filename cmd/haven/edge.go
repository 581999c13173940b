package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/objstore"
)

func newEdgeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "edge", Short: "The edge cache in front of the load balancer and the object store (CloudFront)"}
	var asJSON bool
	inv := &cobra.Command{
		Use:   "invalidate PATH...",
		Short: `Drop cached objects at the edge, e.g. "/static/*" (as aws cloudfront create-invalidation)`,
		Long: `Drop cached objects at the edge, as CloudFront's CreateInvalidation does: each
path starts with /, and * may end it to match a prefix ("/static/*"). Every
variant of a matching object goes (query strings, encodings). It has taken
effect when the command returns: the next request fetches from the origin.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := g.client().Invalidate(cmd.Context(), api.InvalidationRequest{Paths: args})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "invalidated %v: %d cached objects removed in %.1f ms\n", res.Paths, res.Objects, res.TookMS)
			return nil
		},
	}
	inv.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(inv)
	return cmd
}

// newObjStoreCmd is the object store's own process: the region starts
// `haven objstore serve --dir DIR` and adopts it after a daemon restart.
func newObjStoreCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "objstore", Short: "The object store's own process (started by the region)", Hidden: true}
	cmd.AddCommand(&cobra.Command{
		Use:                "serve --dir DIR [--log-level LEVEL]",
		Short:              "Serve the S3 API from DIR/config.json until SIGTERM (SIGHUP reloads)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return objstore.Main(cmd.Context(), args)
		},
	})
	return cmd
}
