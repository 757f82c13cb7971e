"""Model analysis shared by the model file (`coding`) and the exporter (`export`).

  kinds      what each layer call is to the analysis (`OpKind`)
  graph      the layer calls of a graph model, in topological order
  kernels    decoded kernel weights (`KernelWeights`) and one rule per kernel kind
  batchnorm  BatchNormalization at inference and its two foldings
  channels   which channels can be removed, through the whole graph
  unread     which channels never reach an output
"""

__all__ = ["batchnorm", "channels", "graph", "kernels", "kinds", "unread"]
