package gpu

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// LabelChange is what ApplyLabels did to a node.
type LabelChange struct {
	Set     map[string]string
	Removed []string
}

// Empty says the node already had exactly the wanted GPU labels.
func (c LabelChange) Empty() bool { return len(c.Set) == 0 && len(c.Removed) == 0 }

// ApplyLabels makes the node's GPU labels (those under LabelPrefixes) equal
// want: it sets what differs and removes what is stale, such as the labels
// of a GPU that is gone, and leaves every other label alone. It patches only
// when something differs, so a rerun changes nothing.
func ApplyLabels(ctx context.Context, cs kubernetes.Interface, node string, want map[string]string) (LabelChange, error) {
	var ch LabelChange
	// k3s's own controllers update a Node too (annotations, taints,
	// status): a conflict means "read again", not a failed install
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		ch, err = applyLabels(ctx, cs, node, want)
		return err
	})
	if apierrors.IsConflict(err) {
		return ch, fmt.Errorf("label node %s: %w", node, err)
	}
	return ch, err
}

func applyLabels(ctx context.Context, cs kubernetes.Interface, node string, want map[string]string) (LabelChange, error) {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return LabelChange{}, fmt.Errorf("node %s: %w", node, err)
	}
	ch := DiffLabels(n.Labels, want)
	if ch.Empty() {
		return ch, nil
	}
	// a JSON merge patch: null removes a key; the resourceVersion makes a
	// concurrent change of the labels fail (and be read again) rather than
	// be overwritten
	labels := map[string]any{}
	for k, v := range ch.Set {
		labels[k] = v
	}
	for _, k := range ch.Removed {
		labels[k] = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels, "resourceVersion": n.ResourceVersion}})
	if err != nil {
		return ch, err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "perch"}); err != nil {
		if apierrors.IsConflict(err) {
			return ch, err // unwrapped, for RetryOnConflict
		}
		return ch, fmt.Errorf("label node %s: %w", node, err)
	}
	return ch, nil
}

// DiffLabels is what ApplyLabels would change on a node that has the
// labels have.
func DiffLabels(have, want map[string]string) LabelChange {
	ch := LabelChange{Set: map[string]string{}}
	for k, v := range want {
		if h, ok := have[k]; !ok || h != v {
			ch.Set[k] = v
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok && ownedLabel(k) {
			ch.Removed = append(ch.Removed, k)
		}
	}
	slices.Sort(ch.Removed)
	return ch
}

func ownedLabel(k string) bool {
	for _, p := range LabelPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
