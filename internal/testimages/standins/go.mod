module github.com/perchedge/perch/internal/testimages/standins

go 1.26.8

require (
	github.com/yapingcat/gomedia v0.0.0-20240906162731-17feea57090c
	go.yaml.in/yaml/v3 v3.0.5
)
