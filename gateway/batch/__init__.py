"""The Files and Batch APIs behind /v1/files and /v1/batches: storage, input lines, the driver."""
