// Verify a key-mode Sigstore bundle (DSSE) with sigstore-js, fully offline.
//
// usage: node verify_key_bundle.js SIGSTORE_PACKAGE_DIR BUNDLE.json KEY.pub
//
// SIGSTORE_PACKAGE_DIR is node_modules/sigstore of an `npm install sigstore`;
// its own dependencies (@sigstore/bundle, @sigstore/verify) do the work, exactly
// as sigstore.verify() would, but with trust material built from the public key
// alone instead of a TUF-fetched trusted root. Every socket connection is made to
// throw first, so a verification that tried the network would fail loudly.
// Prints one line; exit 0 verified, 1 rejected, 2 usage.
'use strict';
const net = require('net');
net.Socket.prototype.connect = function () {
  throw new Error('network access attempted during offline verification');
};
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

if (process.argv.length !== 5) {
  console.log('usage: verify_key_bundle.js SIGSTORE_PACKAGE_DIR BUNDLE KEY.pub');
  process.exit(2);
}
const [pkgDir, bundlePath, keyPath] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(pkgDir), 'package.json'));
const { bundleFromJSON } = req('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = req('@sigstore/verify');

try {
  const key = crypto.createPublicKey(fs.readFileSync(keyPath));
  const der = key.export({ type: 'spki', format: 'der' });
  // The hint is the SHA-256 of the SPKI DER: recomputed here, independently.
  const hint = crypto.createHash('sha256').update(der).digest('hex');
  const emptyRoot = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const trust = toTrustMaterial(emptyRoot, { [hint]: { rawBytes: der } });
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  if (bundle.content.$case !== 'dsseEnvelope') throw new Error('not a DSSE bundle');
  const envType = bundle.content.dsseEnvelope.payloadType;
  if (envType !== 'application/vnd.in-toto+json') throw new Error(`unexpected payloadType ${envType}`);
  verifier.verify(toSignedEntity(bundle));
  const statement = JSON.parse(bundle.content.dsseEnvelope.payload.toString('utf8'));
  console.log(`VERIFIED ${statement.predicateType} subjects=${statement.subject.length} key=${hint}`);
  process.exit(0);
} catch (e) {
  console.log(`REJECTED ${e.code || e.name}: ${e.message}`);
  process.exit(1);
}
