// Step 5: the path the call took — the selected ICE candidate pair from getStats: direct (host),
// through the client's router (server-reflexive), or through the clinic's TURN relay; UDP or TCP.

export function selectedPair(stats) {
  for (const report of stats.values()) {
    if (report.type === "transport" && report.selectedCandidatePairId) return stats.get(report.selectedCandidatePairId);
  }
  for (const report of stats.values()) {
    if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") return report;
  }
  return null;
}

/** The contract's `path`, or null when the call never connected. */
export async function selectedPath(pc) {
  if (!pc || pc.connectionState !== "connected") return null;
  const stats = await pc.getStats();
  const pair = selectedPair(stats);
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  if (!local) return null;
  const relayed = local.candidateType === "relay" || remote?.candidateType === "relay";
  return {
    candidate_type: relayed ? "relay" : local.candidateType,
    protocol: local.protocol,
    relay_protocol: local.candidateType === "relay" ? local.relayProtocol ?? null : null,
  };
}
