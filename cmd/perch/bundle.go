package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/bundles"
)

func newBundleCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Air-gap bundles: signing keys"}
	var out string
	keygen := &cobra.Command{
		Use:   "keygen --out NAME",
		Short: "Make a bundle signing key pair: NAME.key (secret, 0600) and NAME.pub",
		Long: "Make an ed25519 key pair in minisign's format. Keep NAME.key on the build\n" +
			"machine; give NAME.pub to every site (bundle.publicKey). A stock\n" +
			"`minisign -V -p NAME.pub` verifies what perch signs.",
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return &usageError{fmt.Errorf("--out NAME is required")}
			}
			pub, key, err := bundles.GenerateKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "secret key: %s (keep it off the sites)\npublic key: %s (set bundle.publicKey to it)\n", key, pub)
			return nil
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "path and name of the key pair, without extension")
	cmd.AddCommand(keygen)
	return cmd
}
