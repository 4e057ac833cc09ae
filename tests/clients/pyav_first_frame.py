"""Opens an RTSP URL with PyAV (the library Home Assistant's stream component uses) and prints
the codecs and how long the first decoded video frame and audio frame took, as JSON."""
import json
import sys
import time

import av

url = sys.argv[1]
started = time.monotonic()
container = av.open(url, options={"rtsp_transport": "tcp", "stimeout": "5000000"}, timeout=10)
result = {"streams": [s.codec_context.name for s in container.streams]}
for packet in container.demux():
    for frame in packet.decode():
        kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
        key = f"first_{kind}_s"
        if key not in result:
            result[key] = round(time.monotonic() - started, 3)
            if kind == "video":
                result["width"], result["height"] = frame.width, frame.height
    if "first_video_s" in result and "first_audio_s" in result:
        break
container.close()
print(json.dumps(result))
