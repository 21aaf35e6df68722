package main

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/manifests/images"
)

// siteFlags are --config and --allow-missing of bundle build and bundle
// images: which appliances the bundle is for, and what it may lack.
type siteFlags struct {
	configs      []string
	allowMissing []string
}

func (f *siteFlags) register(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.configs, "config", nil, "appliance config the bundle is for (repeatable): its images are needed, and a bundle missing one is refused; without any, every component a config can turn on is listed and a miss is a warning")
	c.Flags().StringArrayVar(&f.allowMissing, "allow-missing", nil, "image the bundle may lack although a config needs it (repeatable), for one no site will run")
}

// sites are the kinds of node the configs make, or every component when
// none is given; gate says whether a miss refuses the bundle.
func (f *siteFlags) sites(s *streams) (sites []images.Site, gate bool, err error) {
	for _, a := range f.allowMissing {
		if _, err := name.ParseReference(a); err != nil {
			return nil, false, &usageError{fmt.Errorf("--allow-missing %q: not an image reference: %v", config.Clip(a), err)}
		}
	}
	if len(f.configs) == 0 {
		return images.Everything(), false, nil
	}
	for _, file := range f.configs {
		if file == "" || file == "-" {
			return nil, false, &usageError{fmt.Errorf("--config %q: name an appliance config file", file)}
		}
		// install-only keys (where k3s comes from on site) do not decide
		// which images a node pulls; the config is read as install reads
		// it, PERCH_* variables included
		cfg, err := config.Load(config.Source{File: file})
		if err := reportConfig(s, config.Without(err, config.InstallOnly...)); err != nil {
			return nil, false, err
		}
		sites = append(sites, images.ConfigSites(filepath.Base(file), apps.Spec(&cfg), cfg.GPU.Mode == config.GPURequired)...)
	}
	return sites, true, nil
}

func newBundleImagesCmd(s *streams) *cobra.Command {
	var spec string
	var allowUnverified bool
	var sf siteFlags
	var out output
	cmd := &cobra.Command{
		Use:   "images --spec SPEC [--config APPLIANCE ...] [--output json]",
		Short: "List every image a bundle's appliance pulls, where each is needed, and whether the bundle carries it",
		Long: "Render every chart of the spec as install renders it (the values Perch gives\n" +
			"it, its namespace, GPU and CPU-only nodes, each optional component a config\n" +
			"turns on) and list every image that names, with the chart, object and field,\n" +
			"plus k3s's own images for the spec's k3s and the components the config\n" +
			"leaves on. Each image says how the bundle supplies it: the spec's images,\n" +
			"imagesFromCharts, k3s.airgapImages, or MISSING; `bundle build` uses the\n" +
			"same list and refuses a missing one when --config is given. It fetches\n" +
			"the spec's k3s and charts into a temporary directory, pulls no image and\n" +
			"writes nothing. Exit 1 when an image is missing.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spec == "" {
				return &usageError{fmt.Errorf("--spec is required")}
			}
			sites, _, err := sf.sites(s)
			if err != nil {
				return err
			}
			sp, err := bundles.LoadSpec(spec)
			if err != nil {
				return inputError(err)
			}
			list, err := bundles.Images(cmd.Context(), sp, bundles.BuildOptions{
				Pwd: filepath.Dir(absPath(spec)), Needs: images.Func(sites), AllowMissing: sf.allowMissing,
				AllowUnverifiedSources: allowUnverified,
			})
			if err != nil {
				return inputError(err)
			}
			if out.json() {
				if err := writeJSON(s.out, struct {
					Images []bundles.Supply `json:"images"`
				}{list}); err != nil {
					return err
				}
			} else {
				printSupplies(s.out, list)
			}
			for _, x := range list {
				if x.By == bundles.Missing {
					return &alreadyReported{fmt.Errorf("images missing")}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "BundleSpec file (YAML or JSON)")
	cmd.Flags().BoolVar(&allowUnverified, "allow-unverified-sources", false, "accept http(s) sources without ?checksum=")
	sf.register(cmd)
	addOutput(cmd.Flags(), &out, "")
	return cmd
}

// printSupplies is the table of `perch bundle images`: an image, how the
// bundle has it, and every place that needs it on the lines below.
func printSupplies(w io.Writer, list []bundles.Supply) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tIN THE BUNDLE BY")
	missing := 0
	for _, x := range list {
		fmt.Fprintf(tw, "%s\t%s\n", x.Image, x.By)
		if x.By == bundles.Missing {
			missing++
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, x := range list {
		if len(x.From) == 0 {
			fmt.Fprintf(w, "%s\n    needed by no app (listed in the spec's images)\n", x.Image)
			continue
		}
		fmt.Fprintf(w, "%s\n", x.Image)
		for _, o := range x.From {
			fmt.Fprintf(w, "    %s\n", o)
		}
	}
	if missing > 0 {
		fmt.Fprintf(w, "\n%d image(s) MISSING: %s\n", missing, bundles.FixMissing)
	}
}
