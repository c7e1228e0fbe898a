//! fmp4: the camera's own H.264 access units as fragmented MP4 (ISO/IEC 14496-12 and -15),
//! written by hand: no decoding, no encoding, no GStreamer element per viewer.
//!
//! ```text
//! key frame (Annex B, SPS + PPS in front) ─► Track (size, codec string, avcC) ─► init segment
//!                                                         ftyp + moov(mvhd, trak, mvex)
//! every access unit ─► fragment: moof(mfhd, traf(tfhd, tfdt, trun: one sample)) + mdat
//!                      (its NAL units length-prefixed; parameter sets and delimiters left out)
//! ```
//!
//! One sample per fragment keeps the delay from camera to screen at one frame interval.
//! Decode times are the stream's presentation times on a 90 kHz clock: streams with B-frames
//! (presentation order differs from decoding order) are not supported and are refused.

/// The 90 kHz clock of RTP video, used as the track's timescale.
pub const TIMESCALE: u32 = 90_000;

/// A video track as the init segment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string, as `MediaSource.isTypeSupported` wants it (`avc1.64001f`).
    pub codec: String,
    /// The sample entry (`avc1` with its `avcC`).
    entry: Vec<u8>,
}

/// The NAL units of an Annex B access unit (start codes removed).
pub fn nal_units(annex_b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 2 < annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            if let Some(s) = start {
                // A four-byte start code leaves one zero behind the previous unit.
                let mut end = i;
                while end > s && annex_b[end - 1] == 0 {
                    end -= 1;
                }
                out.push(&annex_b[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start.filter(|&s| s < annex_b.len()) {
        out.push(&annex_b[s..]);
    }
    out
}

fn h264_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The track a key frame describes (its SPS and PPS), or why not.
pub fn h264_track(key_frame: &[u8]) -> Result<Track, String> {
    let nals = nal_units(key_frame);
    let sps = nals.iter().find(|n| h264_type(n) == 7).ok_or("no sequence parameter set before the key frame")?;
    let pps = nals.iter().find(|n| h264_type(n) == 8).ok_or("no picture parameter set before the key frame")?;
    let info = parse_sps(sps)?;
    if sps.len() < 4 {
        return Err("sequence parameter set too short".into());
    }
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(pps);
    if HIGH_PROFILES.contains(&sps[1]) {
        avcc.extend_from_slice(&[
            0xfc | info.chroma_format as u8,
            0xf8 | info.bit_depth_luma_minus8 as u8,
            0xf8 | info.bit_depth_chroma_minus8 as u8,
            0,
        ]);
    }
    let mut entry = Vec::with_capacity(86 + avcc.len());
    entry.extend_from_slice(&[0; 6]); // reserved
    entry.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    entry.extend_from_slice(&[0; 16]); // pre-defined, reserved
    entry.extend_from_slice(&(info.width as u16).to_be_bytes());
    entry.extend_from_slice(&(info.height as u16).to_be_bytes());
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&1u16.to_be_bytes()); // frame count
    entry.extend_from_slice(&[0; 32]); // compressor name
    entry.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    entry.extend_from_slice(&(-1i16).to_be_bytes());
    entry.extend_from_slice(&mp4_box(b"avcC", &avcc));
    Ok(Track {
        width: info.width,
        height: info.height,
        codec: format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]),
        entry: mp4_box(b"avc1", &entry),
    })
}

const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
    b.extend_from_slice(body);
    mp4_box(kind, &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix() -> Vec<u8> {
    MATRIX.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `ftyp` + `moov` for one video track (id 1) whose samples all come in fragments.
pub fn init_segment(track: &Track) -> Vec<u8> {
    let ftyp =
        mp4_box(b"ftyp", &[b"isom".as_slice(), &0x200u32.to_be_bytes(), b"isom", b"iso6", b"avc1", b"mp41"].concat());
    let mut mvhd = vec![0; 8]; // creation, modification
    mvhd.extend_from_slice(&1000u32.to_be_bytes());
    mvhd.extend_from_slice(&0u32.to_be_bytes()); // duration: unknown, it is live
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
    mvhd.extend_from_slice(&[0; 10]);
    mvhd.extend_from_slice(&matrix());
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes()); // next track id
    let mut tkhd = vec![0; 8];
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track id
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&0u32.to_be_bytes()); // duration
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&[0; 8]); // layer, group, volume, reserved
    tkhd.extend_from_slice(&matrix());
    tkhd.extend_from_slice(&(track.width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(track.height << 16).to_be_bytes());
    let mut mdhd = vec![0; 8];
    mdhd.extend_from_slice(&TIMESCALE.to_be_bytes());
    mdhd.extend_from_slice(&0u32.to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
    mdhd.extend_from_slice(&[0; 2]);
    let hdlr = [&[0u8; 4][..], b"vide", &[0; 12], b"gridsight live\0"].concat();
    let dref = full_box(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &full_box(b"url ", 0, 1, &[])].concat());
    let stsd = full_box(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &track.entry].concat());
    let empty = 0u32.to_be_bytes();
    let stbl = mp4_box(
        b"stbl",
        &[
            stsd,
            full_box(b"stts", 0, 0, &empty),
            full_box(b"stsc", 0, 0, &empty),
            full_box(b"stsz", 0, 0, &[0u8; 8]),
            full_box(b"stco", 0, 0, &empty),
        ]
        .concat(),
    );
    let minf = mp4_box(b"minf", &[full_box(b"vmhd", 0, 1, &[0; 8]), mp4_box(b"dinf", &dref), stbl].concat());
    let mdia = mp4_box(b"mdia", &[full_box(b"mdhd", 0, 0, &mdhd), full_box(b"hdlr", 0, 0, &hdlr), minf].concat());
    let trak = mp4_box(b"trak", &[full_box(b"tkhd", 0, 3, &tkhd), mdia].concat());
    let trex = full_box(b"trex", 0, 0, &[1u32, 1, 0, 0, 0].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>());
    let moov = mp4_box(b"moov", &[full_box(b"mvhd", 0, 0, &mvhd), trak, mp4_box(b"mvex", &trex)].concat());
    [ftyp, moov].concat()
}

/// One access unit as a fragment: `moof` + `mdat`. `decode_time` and `duration` are in
/// [`TIMESCALE`] ticks; `sequence` numbers the fragments of a stream.
pub fn fragment(sequence: u32, decode_time: u64, duration: u32, key: bool, annex_b: &[u8]) -> Vec<u8> {
    let nals: Vec<&[u8]> =
        nal_units(annex_b).into_iter().filter(|n| !matches!(h264_type(n), 7..=9) && !n.is_empty()).collect();
    let size: usize = nals.iter().map(|n| 4 + n.len()).sum();
    // A sync sample depends on nothing; any other depends on others and is not a sync sample.
    let flags: u32 = if key { 0x0200_0000 } else { 0x0101_0000 };
    let trun_body_len = 4 + 4 + 12;
    let moof_len = 8 + (8 + 8) + 8 + (8 + 4 + 4) + (8 + 4 + 8) + (8 + 4 + trun_body_len);
    let mut trun = Vec::with_capacity(trun_body_len);
    trun.extend_from_slice(&1u32.to_be_bytes()); // one sample
    trun.extend_from_slice(&((moof_len + 8) as u32).to_be_bytes()); // data offset: past the mdat header
    trun.extend_from_slice(&duration.to_be_bytes());
    trun.extend_from_slice(&(size as u32).to_be_bytes());
    trun.extend_from_slice(&flags.to_be_bytes());
    let traf = mp4_box(
        b"traf",
        &[
            full_box(b"tfhd", 0, 0x02_0000, &1u32.to_be_bytes()), // default-base-is-moof
            full_box(b"tfdt", 1, 0, &decode_time.to_be_bytes()),
            full_box(b"trun", 0, 0x000701, &trun), // data offset, duration, size, flags
        ]
        .concat(),
    );
    let moof = mp4_box(b"moof", &[full_box(b"mfhd", 0, 0, &sequence.to_be_bytes()), traf].concat());
    debug_assert_eq!(moof.len(), moof_len);
    let mut out = Vec::with_capacity(moof.len() + 8 + size);
    out.extend_from_slice(&moof);
    out.extend_from_slice(&((8 + size) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

/// What the init segment needs of a sequence parameter set.
#[derive(Debug, PartialEq, Eq)]
struct SpsInfo {
    width: u32,
    height: u32,
    chroma_format: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
}

/// Reads the bits of an RBSP (emulation prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, String> {
        let byte = self.data.get(self.pos / 8).ok_or("sequence parameter set ends early")?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        (0..n).try_fold(0, |v, _| Ok((v << 1) | self.bit()?))
    }

    /// Exp-Golomb, unsigned.
    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("bad Exp-Golomb code in the sequence parameter set".into());
            }
        }
        Ok((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// Exp-Golomb, signed.
    fn se(&mut self) -> Result<i32, String> {
        let v = self.ue()?;
        Ok(if v % 2 == 1 { v.div_ceil(2) as i32 } else { -((v / 2) as i32) })
    }
}

fn parse_sps(sps: &[u8]) -> Result<SpsInfo, String> {
    let mut r = Bits::new(sps);
    r.bits(8)?; // NAL header
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format, mut depth_luma, mut depth_chroma) = (1, 0, 0);
    if HIGH_PROFILES.contains(&(profile as u8)) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?; // separate colour planes
        }
        depth_luma = r.ue()?;
        depth_chroma = r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass
        if r.bit()? == 1 {
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_allowed
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_y = sub_h * (2 - frame_mbs_only);
    let width = (width_mbs * 16).checked_sub(sub_w * (left + right));
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub(crop_y * (top + bottom));
    match (width, height) {
        (Some(width), Some(height)) if width > 0 && height > 0 && width < 16384 && height < 16384 => Ok(SpsInfo {
            width,
            height,
            chroma_format,
            bit_depth_luma_minus8: depth_luma,
            bit_depth_chroma_minus8: depth_chroma,
        }),
        _ => Err("the sequence parameter set gives no sensible picture size".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // x264, 640x360, High profile (level 3.0): cropped from 368 lines of macroblocks.
    const SPS_640X360: [u8; 30] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x16, 0xa0, 0xc0, 0xc0, 0xd4, 0xa0, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe2, 0xc5, 0xb2, 0xc0,
    ];

    fn unit(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat()).collect()
    }

    #[test]
    fn start_codes_of_three_and_four_bytes_split_the_units() {
        let au = [&[0u8, 0, 0, 1, 9, 0x10][..], &[0, 0, 1, 0x65, 1, 2, 0][..], &[0, 0, 0, 1, 0x41, 7][..]].concat();
        assert_eq!(nal_units(&au), vec![&[9u8, 0x10][..], &[0x65, 1, 2][..], &[0x41, 7][..]]);
        assert!(nal_units(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn the_size_and_codec_come_from_the_sequence_parameter_set() {
        let key = unit(&[&SPS_640X360, &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0], &[0x65, 0x88, 0x84]]);
        let track = h264_track(&key).unwrap();
        assert_eq!((track.width, track.height), (640, 360));
        assert_eq!(track.codec, "avc1.64001e");
        let init = init_segment(&track);
        assert_eq!(&init[4..8], b"ftyp");
        assert!(init.windows(4).any(|w| w == b"avcC") && init.windows(4).any(|w| w == b"trex"));
        // Every box's size adds up: ftyp then moov fill the segment exactly.
        let ftyp = u32::from_be_bytes(init[0..4].try_into().unwrap()) as usize;
        let moov = u32::from_be_bytes(init[ftyp..ftyp + 4].try_into().unwrap()) as usize;
        assert_eq!(ftyp + moov, init.len());
        assert!(h264_track(&unit(&[&[0x65, 0x88]])).unwrap_err().contains("sequence parameter set"));
    }

    #[test]
    fn a_fragment_carries_the_picture_without_parameter_sets() {
        let key = unit(&[&SPS_640X360, &[0x68, 0xeb], &[0x65, 0x88, 0x84, 0x21]]);
        let f = fragment(7, 90_000, 3600, true, &key);
        assert_eq!(&f[4..8], b"moof");
        let moof = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        assert_eq!(&f[moof + 4..moof + 8], b"mdat");
        // The sample: one NAL unit of 4 bytes behind its length.
        assert_eq!(&f[moof + 8..], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21]);
        // The data offset points at it, from the start of the moof.
        let trun = f.windows(4).position(|w| w == b"trun").unwrap();
        let offset = u32::from_be_bytes(f[trun + 12..trun + 16].try_into().unwrap()) as usize;
        assert_eq!(offset, moof + 8);
        let delta = fragment(8, 93_600, 3600, false, &unit(&[&[0x41, 0x9a]]));
        let trun = delta.windows(4).position(|w| w == b"trun").unwrap();
        assert_eq!(&delta[trun + 24..trun + 28], &0x0101_0000u32.to_be_bytes());
    }
}
