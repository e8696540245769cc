// Dev-only: play an exported GLB with three.js AnimationMixer in node and print which frame node is visible
// at each frame time (switch mode) or the morph weights (morph mode). Run by scripts/validate_glb.py --playback.
import fs from 'fs';
import * as THREE from 'three';
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
const buf = fs.readFileSync(process.argv[2]);
const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
new GLTFLoader().parse(ab, '', (gltf) => {
  const clip = gltf.animations[0];
  const mixer = new THREE.AnimationMixer(gltf.scene);
  mixer.clipAction(clip).play();
  const frames = gltf.scene.getObjectByName('sv4d_animation');
  const out = {duration: clip.duration, tracks: clip.tracks.length, visible: []};
  const n = gltf.parser.json.asset.extras.sv4d.frame_count, fps = gltf.parser.json.asset.extras.sv4d.fps;
  for (let k = 0; k < 2 * n; k++) {   // two loops, sampled mid-frame
    mixer.setTime((k + 0.5) / fps);
    const vis = frames ? frames.children.filter(c => c.scale.x > 0.5).map(c => c.name) : [];
    out.visible.push(vis.join('+'));
  }
  if (!frames) { const m = gltf.scene.getObjectByName('sv4d_morph'); out.morph = [];
    for (let k = 0; k <= 2 * n; k++) { mixer.setTime(k / fps); out.morph.push(Array.from(m.morphTargetInfluences).map(x => +x.toFixed(2)).join(',')); } }
  console.log(JSON.stringify(out));
}, (e) => { console.error('ERR', e); process.exit(1); });
