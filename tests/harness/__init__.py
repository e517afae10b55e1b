"""Test harness shared by the tests and the benchmarks: real servers, the impairment relay,
network namespaces, coturn, InfluxDB and VictoriaMetrics, named fault injectors."""
