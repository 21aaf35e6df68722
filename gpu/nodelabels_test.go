package gpu

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A Node that k3s's controllers change between Perch's read and its patch
// is read again and labelled, not a failed install.
func TestApplyLabelsRetriesAConflict(t *testing.T) {
	cs := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}}})
	conflicts := 1
	cs.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n", nil)
		}
		return false, nil, nil
	})
	want := map[string]string{LabelPresent: "true"}
	ch, err := ApplyLabels(context.Background(), cs, "n", want)
	if err != nil || ch.Set[LabelPresent] != "true" || conflicts != 0 {
		t.Fatalf("ApplyLabels after a conflict: %+v, %v (conflicts left %d)", ch, err, conflicts)
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), "n", metav1.GetOptions{})
	if n.Labels[LabelPresent] != "true" || n.Labels["a"] != "1" {
		t.Errorf("labels %v", n.Labels)
	}
}
