"""The k8s squad's analyzers: pods and their containers (pods), the cluster around them (cluster)."""
