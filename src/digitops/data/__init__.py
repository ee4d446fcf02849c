"""Original datasets: where they come from (sources), how they are fetched and verified (fetch), how
their files are parsed (idx, usps), and how a source becomes one array file (ingest)."""
