'use strict';
/*
 * A fault for bench/doctor, loaded into the backend with NODE_OPTIONS="--require <this file>":
 * requests to each path of DOCTOR_SLOW_PATHS ("P=MS,P2=MS2") wait MS ms before the backend
 * sees them (one slow endpoint); every other request is untouched. The backend itself is not
 * changed.
 */
const http = require('http');

const slow = {};
for (const item of (process.env.DOCTOR_SLOW_PATHS || '').split(',')) {
  const at = item.lastIndexOf('=');
  const ms = Number(item.slice(at + 1));
  if (at > 0 && ms > 0) slow[item.slice(0, at).trim()] = ms;
}

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function delayed(event, req, res) {
  if (event === 'request') {
    const ms = slow[String(req.url).split('?')[0]];
    if (ms) {
      setTimeout(() => emit.call(this, event, req, res), ms);
      return true;
    }
  }
  return emit.apply(this, arguments);
};
