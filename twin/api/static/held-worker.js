// The held cells' mask (held.js), worked out off the page's main thread: {id, layer} in, {id, blob,
// cells} or {id, error} out.

import { heldMask } from "./held.js";

self.onmessage = async ({ data }) => {
  try {
    const { blob, cells } = await heldMask(data.layer);
    self.postMessage({ id: data.id, blob, cells });
  } catch (err) {
    self.postMessage({ id: data.id, error: err.message });
  }
};
