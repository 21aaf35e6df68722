#!/usr/bin/env bash
# Perch spike: a pod whose image exists only in a private TLS + basic-auth
# registry (the stand-in for `perch registry serve`) reaches Running on a
# k3s server+agent built from the fixture, on this VM (2 cores, cgroup v1,
# no systemd, no CAP_SYS_RESOURCE, no internet).
#
#   run.sh [embedded|debian]     default: embedded
#     embedded  k3s's own containerd (the fixture binary via a `containerd`
#               symlink on PATH), configured by DATA/agent/etc/containerd/config.toml.tmpl;
#               mirrors from registries.yaml (--private-registry)
#     debian    Debian's containerd 1.6 started by this script,
#               k3s --container-runtime-endpoint; mirrors from certs.d/docker.io/hosts.toml
#
# Needs root and: containerd runc containernetworking-plugins busybox-static
# docker-registry openssl (scripts/test-deps), go (module proxy) for the image builder.
# Env: KEEP=1 leaves everything running (prints how to clean up by hand).
set -euo pipefail
MODE=${1:-embedded}
case $MODE in embedded|debian) ;; *) echo "usage: $0 [embedded|debian]" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 1; }

SPIKE=$(cd "$(dirname "$0")" && pwd)
K3S=${K3S:-$(/work/main/scripts/k3s-fixture)}
KUBECTL=$(dirname "$K3S")/kubectl
CRICTL=$(dirname "$K3S")/crictl
R=$SPIKE/run-$MODE                 # everything of this run lives here
DATA=$R/data                       # k3s --data-dir
REG=$SPIKE/reg                     # registry: pki, htpasswd, storage
REG_ADDR=127.0.0.1:5000
REG_USER=perch REG_PASS=s3cret
CNI_CONF_DIR=$DATA/agent/etc/cni/net.d
if [[ $MODE == embedded ]]; then
  SOCK=/run/k3s/containerd/containerd.sock      # fixed by k3s
else
  SOCK=/run/perch-spike/containerd.sock
fi

log() { printf '[%6.1fs] %s\n' "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >&2; }
T0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------- cleanup
K3S_PID= REG_PID=
WATCH="/etc/rancher /var/lib/rancher /var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers /run/k3s /run/netns /run/perch-spike /opt/cni /etc/cni"
PRE=$(for p in $WATCH; do if [[ -e $p ]]; then echo "$p"; fi; done | tr '\n' ' ')
in_ns() { nsenter -t "$K3S_PID" -m -- "$@"; }   # the sandbox's mount namespace
cleanup() {
  set +e
  if [[ ${KEEP:-0} == 1 ]]; then log "KEEP=1: left running (k3s pid $K3S_PID, registry pid $REG_PID)"; return; fi
  log "cleanup"
  if [[ -n $K3S_PID ]] && kill -0 "$K3S_PID" 2>/dev/null; then
    # 1. Graceful: delete every pod through the API while kubelet still runs,
    #    so it stops the containers, runs CNI DEL (veth, IP, CNI-* chains) and
    #    removes the pod cgroups. (crictl rmp with kubelet alive only makes
    #    kubelet recreate the sandbox.)
    "$KUBECTL" --kubeconfig "$R/kubeconfig" delete pods --all -A --wait --timeout=30s >/dev/null 2>&1
    for _ in $(seq 50); do
      [[ -z $(in_ns "$CRICTL" --runtime-endpoint "unix://$SOCK" pods -q --state ready 2>/dev/null) ]] && break; sleep 0.1
    done
    # 2. Stop k3s (kubelet, kube-proxy, apiserver; the embedded containerd
    #    dies with it: PDEATHSIG).
    kill -TERM "$K3S_PID"
    for _ in $(seq 100); do kill -0 "$K3S_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$K3S_PID" 2>/dev/null
  fi
  [[ -f $R/containerd.pid ]] && kill -TERM "$(cat "$R/containerd.pid")" 2>/dev/null
  # 3. Crash path: shims (and their containers) of our containerd that are left.
  local shims
  shims=$(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" || true)
  if [[ -n $shims ]]; then
    log "killing leftover shims and their containers: $shims"
    for p in $shims; do pkill -KILL -P "$p"; kill -KILL "$p"; done 2>/dev/null
  fi
  # k3s is a session leader (setsid): wait for its in-flight children too (an
  # iptables-restore that kube-proxy started just before the end still applies
  # its rules after k3s is gone).
  if [[ -n $K3S_PID ]]; then
    for _ in $(seq 50); do [[ -z $(pgrep -s "$K3S_PID") ]] && break; sleep 0.1; done
  fi
  # 4. The sandbox's mount namespace died with its last process, and with it
  #    every mount (overlays, rootfs, netns files, pod volumes): nothing was
  #    mounted in the host namespace. A pod netns dies with its processes and
  #    takes its veth end along; the bridge stays.
  ip link del cni0 2>/dev/null
  # 5. kubelet/kube-proxy KUBE-* and CNI portmap/masquerade CNI-* chains
  #    (same filter as k3s-killall.sh).
  local try
  for try in 1 2 3 4 5; do
    for t in iptables ip6tables; do
      if "$t-save" | grep -qE 'KUBE-|CNI-'; then
        log "removing KUBE-/CNI- $t rules (try $try): $("$t-save" | grep -cE 'KUBE-|CNI-') lines"
        "$t-save" | grep -vE 'KUBE-|CNI-' | "$t-restore"
      fi
    done
    sleep 0.5
    iptables-save | grep -qE 'KUBE-|CNI-' || ip6tables-save | grep -qE 'KUBE-|CNI-' || break
  done
  # 6. cgroup v1: kubelet's QoS cgroups (kubepods/{burstable,besteffort}/pod*)
  #    stay behind in every hierarchy.
  for h in /sys/fs/cgroup/*/kubepods; do [[ -d $h ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null; done
  [[ -n $REG_PID ]] && kill -TERM "$REG_PID" 2>/dev/null
  # Leak check: nothing new on the host.
  local leaks=()
  for p in $WATCH; do [[ -e $p && " $PRE " != *" $p "* ]] && leaks+=("$p"); done
  local procs
  for _ in $(seq 20); do procs=$(pgrep -f "containerd-shim|$K3S" | tr '\n' ' '); [[ -z $procs ]] && break; sleep 0.1; done
  [[ -n $procs ]] && leaks+=("processes: $(ps -o pid=,args= -p ${procs// /,} | cut -c1-80)")
  ip link show cni0 >/dev/null 2>&1 && leaks+=(cni0)
  ip -o link show type veth 2>/dev/null | grep -q . && leaks+=(veth)
  iptables-save | grep -qE 'KUBE-|CNI-' && leaks+=(iptables)
  compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null && leaks+=(cgroups)
  grep -qE "$R|/run/k3s|kubelet" /proc/self/mountinfo && leaks+=(mounts)
  if ((${#leaks[@]})); then log "LEFT ON HOST: ${leaks[*]}"; else log "cleanup done: host as before"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- images
if [[ ! -x $SPIKE/bin/imgbuild || ! -x $SPIKE/bin/pause ]]; then
  log "building imgbuild and pause"
  (cd "$SPIKE/imgbuild" && CGO_ENABLED=0 go build -o ../bin/imgbuild . && CGO_ENABLED=0 go build -ldflags='-s -w' -o ../bin/pause ./pause)
fi

# ---------------------------------------------------------------- registry (TLS + htpasswd)
mkdir -p "$REG/pki" "$REG/data"
if [[ ! -f $REG/pki/server.pem ]]; then
  (cd "$REG/pki" &&
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=perch-spike-ca &&
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 &&
   printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
   openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 30 -extfile ext.cnf) 2>/dev/null
fi
"$SPIKE/bin/imgbuild" -htpasswd "$REG_USER:$REG_PASS" >"$REG/htpasswd"
cat >"$REG/config.yml" <<EOF
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $REG/data}}
http:
  addr: $REG_ADDR
  tls: {certificate: $REG/pki/server.pem, key: $REG/pki/server.key}
auth: {htpasswd: {realm: perch, path: $REG/htpasswd}}
EOF
OTEL_TRACES_EXPORTER=none docker-registry serve "$REG/config.yml" >"$SPIKE/registry-$MODE.log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fsS --cacert "$REG/pki/ca.pem" -u "$REG_USER:$REG_PASS" "https://$REG_ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
"$SPIKE/bin/imgbuild" -pause "$SPIKE/bin/pause" -busybox /bin/busybox \
  -push "$REG_ADDR" -user "$REG_USER" -pass "$REG_PASS" -ca "$REG/pki/ca.pem" 2>&1 | sed 's/^/  /' >&2
log "registry up on https://$REG_ADDR with docker.io/rancher/mirrored-pause:3.6 and docker.io/perch-e2e/busybox:spike"

# ---------------------------------------------------------------- node files
rm -rf "$R"; mkdir -p "$R" "$CNI_CONF_DIR" "$DATA/agent/etc/containerd"
# Bridge CNI with Debian's plugins (flannel is off). host-local keeps its
# state in the data dir, so nothing lands in /var/lib/cni.
cat >"$CNI_CONF_DIR/10-perch-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "perch",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.42.0.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$DATA/agent/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# What Perch would write to /etc/rancher/k3s/config.yaml (k3s server --config).
cat >"$R/config.yaml" <<EOF
data-dir: $DATA
write-kubeconfig: $R/kubeconfig
write-kubeconfig-mode: "0600"
node-name: perch-spike
flannel-backend: none            # bridge conflist above instead
disable-network-policy: true     # kube-router netpol: not needed, fewer iptables chains
disable: [traefik, servicelb, metrics-server, local-storage, coredns]   # no images here
kubelet-arg:
  - root-dir=$DATA/agent/kubelet # k3s leaves kubelet on /var/lib/kubelet otherwise
EOF

if [[ $MODE == embedded ]]; then
  # k3s execs "containerd" from PATH; the fixture is multicall (reexec on argv[0]).
  mkdir -p "$SPIKE/k3sbin"; ln -sfn "$K3S" "$SPIKE/k3sbin/containerd"
  # k3s's own template (templates_linux.go) + restrict_oom_score_adj + CNI dirs
  # (with --flannel-backend=none k3s writes no [cni] section, and
  # .NodeConfig.AgentConfig.CNIConfDir is empty, so the path is literal).
  sed "s|@CNI_CONF_DIR@|$CNI_CONF_DIR|" >"$DATA/agent/etc/containerd/config.toml.tmpl" <<'EOF'
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "{{ .NodeConfig.Containerd.Opt }}"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = {{ .NodeConfig.SELinux }}
  enable_unprivileged_ports = {{ .EnableUnprivileged }}
  enable_unprivileged_icmp = {{ .EnableUnprivileged }}
  restrict_oom_score_adj = true
{{- if .NodeConfig.AgentConfig.PauseImage }}
  sandbox_image = "{{ .NodeConfig.AgentConfig.PauseImage }}"
{{- end }}

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{{ .NodeConfig.AgentConfig.Snapshotter }}"
  disable_snapshot_annotations = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "@CNI_CONF_DIR@"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = {{ .SystemdCgroup }}

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{{ .NodeConfig.Containerd.Registry }}"
{{ if .PrivateRegistryConfig }}
{{- range $k, $v := .PrivateRegistryConfig.Configs }}
{{- if $v.Auth }}
[plugins."io.containerd.grpc.v1.cri".registry.configs."{{$k}}".auth]
  {{ if $v.Auth.Username }}username = {{ printf "%q" $v.Auth.Username }}{{end}}
  {{ if $v.Auth.Password }}password = {{ printf "%q" $v.Auth.Password }}{{end}}
  {{ if $v.Auth.Auth }}auth = {{ printf "%q" $v.Auth.Auth }}{{end}}
  {{ if $v.Auth.IdentityToken }}identitytoken = {{ printf "%q" $v.Auth.IdentityToken }}{{end}}
{{- end }}
{{- end }}
{{- end }}
EOF
  cat >"$R/registries.yaml" <<EOF
mirrors:
  docker.io:
    endpoint: ["https://$REG_ADDR"]
configs:
  "$REG_ADDR":
    auth: {username: $REG_USER, password: $REG_PASS}
    tls: {ca_file: $REG/pki/ca.pem}
EOF
  cat >>"$R/config.yaml" <<EOF
private-registry: $R/registries.yaml
disable-default-registry-endpoint: true   # mirror only, no fallback to docker.io
EOF
  NS_PATH=$SPIKE/k3sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  START_CONTAINERD=
else
  mkdir -p "$R/containerd/certs.d/docker.io"
  cat >"$R/containerd/config.toml" <<EOF
version = 2
root = "$R/containerd/root"
state = "/run/perch-spike/containerd"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/rancher/mirrored-pause:3.6"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$R/containerd/certs.d"
EOF
  # No `server` line: only the mirror is listed (docker.io upstream is unreachable anyway).
  cat >"$R/containerd/certs.d/docker.io/hosts.toml" <<EOF
[host."https://$REG_ADDR"]
  capabilities = ["pull", "resolve"]
  ca = "$REG/pki/ca.pem"
  [host."https://$REG_ADDR".header]
    Authorization = "Basic $(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)"
EOF
  echo "container-runtime-endpoint: unix://$SOCK" >>"$R/config.yaml"
  NS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  START_CONTAINERD="containerd --config $R/containerd/config.toml"
fi

# PRELOAD=1: also drop both images as one OCI-layout tar into k3s's airgap
# images dir; k3s imports it before kubelet starts (the pause image then needs
# no pull; the pod's image is still pulled, imagePullPolicy: Always).
if [[ ${PRELOAD:-0} == 1 ]]; then
  rm -rf "$SPIKE/images/oci"; "$SPIKE/bin/imgbuild" -pause "$SPIKE/bin/pause" -busybox /bin/busybox -oci "$SPIKE/images/oci" 2>/dev/null
  mkdir -p "$DATA/agent/images"; tar -C "$SPIKE/images/oci" -cf "$DATA/agent/images/perch-spike.tar" .
fi

# ---------------------------------------------------------------- start
# Private mount namespace whose /etc, /var/lib, /var/log and /run are overlays
# with their writes in $R/ovl (a mount namespace hides mounts, not writes):
# whatever the flags, k3s writes /etc/rancher/{k3s,node}; kubelet
# /var/lib/kubelet/device-plugins, /var/log/pods, /var/log/containers;
# containerd /run/k3s/containerd (embedded), /run/netns, /var/lib/cni/results.
T_START=$EPOCHREALTIME
PATH=$NS_PATH START_CONTAINERD=$START_CONTAINERD setsid unshare --mount --propagation private -- sh -c '
  set -e
  R=$1; shift
  for d in /etc /var/lib /var/log /run; do
    n=$(echo "$d" | tr / _); mkdir -p "$R/ovl/$n/upper" "$R/ovl/$n/work"
    mount -t overlay "perch$n" -o "lowerdir=$d,upperdir=$R/ovl/$n/upper,workdir=$R/ovl/$n/work" "$d"
  done
  mkdir -p /run/perch-spike
  if [ -n "$START_CONTAINERD" ]; then
    $START_CONTAINERD >"$R/containerd.log" 2>&1 &
    echo $! >"$R/containerd.pid"
  fi
  exec "$@"' sh "$R" "$K3S" server --config "$R/config.yaml" >"$R/k3s.log" 2>&1 </dev/null &
K3S_PID=$!
log "k3s ($MODE) started, pid $K3S_PID; log $R/k3s.log"

KC=("$KUBECTL" --kubeconfig "$R/kubeconfig")
deadline=$((SECONDS + 120))
until [[ -f $R/kubeconfig ]] &&
      [[ $("${KC[@]}" get node perch-spike -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
  kill -0 "$K3S_PID" 2>/dev/null || { tail -30 "$R/k3s.log" >&2; echo "k3s died" >&2; exit 1; }
  ((SECONDS < deadline)) || { tail -30 "$R/k3s.log" >&2; echo "node not Ready in 120 s" >&2; exit 1; }
  sleep 0.2
done
T_READY=$(since "$T_START")
log "node Ready ${T_READY}s after k3s start"

# The default ServiceAccount appears a moment after the apiserver: retry.
T_APPLY=$EPOCHREALTIME
until "${KC[@]}" apply -f - >/dev/null 2>>"$R/apply.err" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: mirror-probe, namespace: default}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: docker.io/perch-e2e/busybox:spike   # exists only in the private registry
    imagePullPolicy: Always
    command: ["sleep", "3600"]
EOF
do sleep 0.2; ((SECONDS < deadline)) || { echo "pod apply failed" >&2; exit 1; }; done
log "pod created ($(since "$T_APPLY")s after node Ready)"
if ! "${KC[@]}" wait --for=jsonpath='{.status.phase}'=Running pod/mirror-probe --timeout=90s >/dev/null; then
  "${KC[@]}" describe pod mirror-probe >&2; exit 1
fi
T_RUN=$(since "$T_START"); T_RUN_APPLY=$(since "$T_APPLY")
log "pod Running ${T_RUN}s after k3s start (${T_RUN_APPLY}s after apply)"
echo "--- pod conditions"
"${KC[@]}" get pod mirror-probe -o jsonpath='{range .status.conditions[*]}{.type}={.status} at {.lastTransitionTime}{"\n"}{end}'
echo "--- node taints/conditions history"
"${KC[@]}" get node perch-spike -o jsonpath='{.metadata.creationTimestamp} created; taints={.spec.taints}; Ready since {.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}'

# ---------------------------------------------------------------- evidence
echo "--- kubectl get node,pod -o wide"
"${KC[@]}" get node,pod -o wide
echo "--- pod events"
"${KC[@]}" get events --field-selector involvedObject.name=mirror-probe -o custom-columns=REASON:.reason,MESSAGE:.message --no-headers
echo "--- crictl images (in the sandbox's mount namespace)"
in_ns "$CRICTL" --runtime-endpoint "unix://$SOCK" images
echo "--- registry access log: manifest GETs by user $REG_USER"
grep -oE '"(GET|HEAD) /v2/[^ ]+/manifests/[^ ]+ HTTP/[0-9.]+" [0-9]+|auth.user.name="?[a-z]+' "$SPIKE/registry-$MODE.log" |
  grep -E 'manifests' | sort | uniq -c
echo "--- exec in pod"
"${KC[@]}" exec mirror-probe -- sh -c 'echo hello from $(hostname); cat /proc/1/cmdline | tr "\0" " "; echo'
printf 'TIMINGS mode=%s node_ready=%ss pod_running=%ss (from apply %ss)\n' "$MODE" "$T_READY" "$T_RUN" "$T_RUN_APPLY"
