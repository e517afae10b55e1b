// AudioWorklet: finds the onsets of the server's 1 kHz tone bursts (netcheck/av/markers.py) in the
// audio the page plays, and posts each onset's AudioContext time. It passes the sound through.

class OnsetProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { threshold, refractoryS } = options.processorOptions;
    this.threshold = threshold;
    this.refractoryS = refractoryS;
    this.lastOnsetS = -1e9;
  }

  process(inputs, outputs) {
    const input = inputs[0];
    const output = outputs[0];
    if (input && input.length > 0) {
      const samples = input[0];
      for (let channel = 0; channel < output.length; channel++) output[channel].set(input[Math.min(channel, input.length - 1)]);
      // currentTime is the context time of this render quantum's first frame
      if (currentTime - this.lastOnsetS >= this.refractoryS) {
        for (let i = 0; i < samples.length; i++) {
          if (samples[i] > this.threshold || samples[i] < -this.threshold) {
            const onsetS = currentTime + i / sampleRate;
            if (onsetS - this.lastOnsetS >= this.refractoryS) {
              this.lastOnsetS = onsetS;
              this.port.postMessage({ onsetS });
            }
            break;
          }
        }
      }
    }
    return true;
  }
}

registerProcessor("netcheck-onset", OnsetProcessor);
